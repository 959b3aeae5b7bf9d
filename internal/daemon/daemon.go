// Package daemon is pinholed: it loads the config and the apps' manifests,
// installs the firewall table before anything else runs, then starts the
// DNS stubs, the audit reader, the REST API, the metrics and the cgroup
// watcher; it reloads on SIGHUP or POST /config/reload and shuts down on
// SIGTERM, leaving the table in place (fail closed).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/buildinfo"
	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/dnsproxy"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/manifest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// DefaultConfig is where pinholed reads its config unless told otherwise.
const DefaultConfig = "/etc/pinhole/pinhole.yaml"

// Options configure Run.
type Options struct {
	// ConfigPath is the config file (DefaultConfig if empty).
	ConfigPath string
	// AllowInitialNetns lets pinholed program the machine's own network
	// namespace; the flag --allow-host-netns sets it.
	AllowInitialNetns bool
	// Reload delivers a value for each reload request from outside (SIGHUP).
	Reload <-chan os.Signal
	// Log is where the log goes (os.Stderr if nil).
	Log io.Writer
}

// Intervals of the background work.
const (
	sweepEvery   = time.Minute
	compactEvery = 15 * time.Minute
	stopTimeout  = 5 * time.Second
)

// state is one loaded config with its compiled policy; it is replaced as a
// whole on reload.
type state struct {
	cfg       *config.Config
	pol       *policy.Policy
	manifests map[string]*manifest.Manifest
	loaded    time.Time
}

// Daemon is a running pinholed.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	level *slog.LevelVar
	start time.Time

	fw    *firewall.Firewall
	store *learned.Store
	dns   *dnsproxy.Proxy
	audit *audit.Log
	api   *api.Server
	met   *metrics
	cg    *cgWatcher
	proxy *proxyStore

	// gate keeps DNS inserts out while a reload computes the learned
	// elements and replaces the table, so no insert lands in the old table
	// after the snapshot was taken.
	gate        sync.RWMutex
	filterUntil atomic.Int64 // unix nanoseconds; see filterStale

	reloadMu sync.Mutex
	st       atomic.Pointer[state]

	mu         sync.Mutex
	problems   map[string]string
	lastReload *api.ReloadOutcome

	auditMu     sync.Mutex
	auditGroup  uint16
	auditCancel context.CancelFunc
	auditDone   chan struct{}

	bg       sync.WaitGroup
	bgCancel context.CancelFunc
	servers  []func(context.Context) error
}

// Run starts pinholed and serves until ctx ends, then shuts down and
// returns nil. It returns an error if it cannot start; the firewall table
// of a previous run, if any, then stays as it was.
func Run(ctx context.Context, opts Options) error {
	if opts.ConfigPath == "" {
		opts.ConfigPath = DefaultConfig
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	d := &Daemon{opts: opts, start: time.Now(), level: new(slog.LevelVar), problems: map[string]string{}}
	d.log = newLogger(opts.Log, config.LogText, d.level)
	err := d.startup(ctx)
	if err != nil {
		d.stop()
		return err
	}
	d.loop(ctx)
	d.log.Info("stopping; the firewall table stays in place")
	notify("STOPPING=1")
	d.stop()
	d.log.Info("stopped")
	return nil
}

// newLogger makes the daemon's logger. Under systemd (JOURNAL_STREAM set)
// the journal stamps lines itself, so the time is left out.
func newLogger(w io.Writer, format config.LogFormat, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// load reads the config and manifests and compiles the policy. The error
// is an *api.Error listing every problem.
func load(path string) (*state, []manifest.Diagnostic, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, failure("config "+path, err)
	}
	mans, warnings, err := policy.LoadManifests(cfg)
	if err != nil {
		return nil, warnings, failure("manifests", err)
	}
	p, err := policy.Compile(cfg, mans)
	if err != nil {
		return nil, warnings, failure("policy", err)
	}
	return &state{cfg: cfg, pol: p, manifests: mans, loaded: time.Now()}, warnings, nil
}

// failure turns a load error into an API error that lists each problem.
func failure(what string, err error) *api.Error {
	e := &api.Error{Status: http.StatusUnprocessableEntity, Code: api.CodeReloadFailed}
	var ce *config.Error
	var pe *policy.Error
	switch {
	case errors.As(err, &ce):
		for _, p := range ce.Problems {
			e.Details = append(e.Details, p.String())
		}
	case errors.As(err, &pe):
		e.Details = append(e.Details, pe.Problems...)
	default:
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				e.Details = append(e.Details, x.Error())
			}
		}
	}
	switch len(e.Details) {
	case 0:
		e.Message = fmt.Sprintf("%s: %v", what, err)
	case 1:
		e.Message = what + ": " + e.Details[0]
		e.Details = nil
	default:
		e.Message = fmt.Sprintf("%s: %d problems", what, len(e.Details))
	}
	return e
}

func (d *Daemon) startup(ctx context.Context) error {
	notify("STATUS=loading config")
	st, warnings, err := load(d.opts.ConfigPath)
	if err != nil {
		return err
	}
	cfg := st.cfg
	d.log = newLogger(d.opts.Log, cfg.Log.Format, d.level)
	d.level.Set(cfg.Log.Level)
	d.log.Info("starting pinholed", "version", buildinfo.String(), "config", cfg.File, "apps", len(st.pol.Apps), "mode", st.pol.Mode)
	for _, w := range warnings {
		d.log.Warn("manifest", "warning", w.String())
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}

	// The table goes in first, with what was learned before, in one
	// transaction: there is no moment without it.
	d.store = learned.New(learned.Options{Limits: learned.LimitsFrom(st.pol.DNS), StateDir: cfg.StateDir, Logger: d.log})
	n, err := d.store.Restore(st.pol)
	if err != nil {
		d.log.Warn("restore learned addresses (what could be read is restored)", "err", err)
	}
	d.fw, err = firewall.New(firewall.Options{Logger: d.log, AllowInitialNetns: d.opts.AllowInitialNetns})
	if err != nil {
		return fmt.Errorf("open firewall: %w", err)
	}
	t := time.Now()
	elems := d.store.Elements(st.pol, d.store.Now())
	if err := d.fw.Apply(st.pol, elems); err != nil {
		return fmt.Errorf("install firewall table (any previous table stays): %w", err)
	}
	d.store.Acknowledge(elems, d.store.Now())
	d.st.Store(st)
	d.log.Info("firewall table installed", "apps", len(st.pol.Apps), "restored_entries", n, "elements", len(elems), "took", time.Since(t))

	d.met = newMetrics()
	d.met.setApps(st.pol)
	d.met.lastReload.Set(float64(st.loaded.Unix()))
	d.met.reg.MustRegister(newFirewallCollector(d.fw, d.log))

	// The audit log comes before the DNS proxy, which records audit-mode
	// lookups in it.
	d.audit = audit.New(audit.Options{Dir: cfg.StateDir, Names: auditNamer{d}, Logger: d.log})
	d.met.reg.MustRegister(newAuditCollector(d.audit))

	d.dns, err = dnsproxy.New(dnsproxy.Options{Policy: st.pol, Store: d.store, Inserter: gatedInserter{d}, Audit: d.audit, Registerer: d.met.reg, Logger: d.log})
	if err != nil {
		return fmt.Errorf("dns proxy: %w", err)
	}
	if err := d.dns.Start(); err != nil {
		d.setProblem("dns", fmt.Sprintf("dns stubs: %v", err))
		d.log.Error("some dns stubs could not listen; their apps cannot resolve names", "err", err)
	}
	d.noteUpstreams(st.pol)

	d.startAuditReader(st.pol.NFLOGGroup)

	if d.proxy, err = loadProxy(cfg.StateDir, cfg.Proxy); err != nil {
		d.log.Warn("proxy settings", "err", err)
	}

	bgCtx, cancel := context.WithCancel(context.Background())
	d.bgCancel = cancel
	d.cg = newCgWatcher(d.fw, cgroup.ID, d.log)
	d.cg.present = func(app string, ok bool) {
		v := 0.0
		if ok {
			v = 1
		}
		d.met.cgroupPresent.WithLabelValues(app).Set(v)
	}
	d.cg.setPolicy(st.pol)
	n2, err := newNotifier()
	if err != nil {
		d.log.Warn("no inotify for cgroups; polling only", "err", err)
		n2 = nil
	}
	rw := &resolvWatcher{log: d.log, poll: resolvPoll, settle: resolvSettle, read: config.ReadResolvConf,
		current: func() (string, []netip.AddrPort) {
			p := d.st.Load().pol
			return p.DNS.ResolvConf, p.DNS.Upstreams
		},
		reload: func() error { _, err := d.reload(false); return err },
	}
	n3, err := newFileNotifier()
	if err != nil {
		d.log.Warn("no inotify for resolv.conf; polling only", "err", err)
		n3 = nil
	}
	d.bg.Add(3)
	go func() {
		defer d.bg.Done()
		d.cg.run(bgCtx, n2)
		if n2 != nil {
			n2.close()
		}
	}()
	go func() {
		defer d.bg.Done()
		rw.run(bgCtx, n3)
		if n3 != nil {
			n3.close()
		}
	}()
	go func() {
		defer d.bg.Done()
		d.housekeeping(bgCtx)
	}()

	if err := d.serveAPI(cfg); err != nil {
		return err
	}
	// Installing the table and restoring what was learned allocate much
	// that is garbage now; hand it back rather than keep it until the next
	// GC cycle, which an idle daemon may not run for minutes.
	debug.FreeOSMemory()
	notify("READY=1", "STATUS="+d.statusLine())
	d.log.Info("ready", "api", cfg.API.Socket, "took", time.Since(d.start))
	return nil
}

// serveAPI opens the API socket and, if configured, the metrics listener.
func (d *Daemon) serveAPI(cfg *config.Config) error {
	var admin *uint32
	if cfg.API.Group != "" {
		g, err := user.LookupGroup(cfg.API.Group)
		if err != nil {
			d.log.Warn("api group not found; only root may use the API", "group", cfg.API.Group, "err", err)
		} else if gid, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
			v := uint32(gid)
			admin = &v
		}
	}
	metricsHandler := promhttp.HandlerFor(d.met.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)})
	d.api = api.New(api.Options{Backend: d, Metrics: metricsHandler, AdminGroup: admin, Logger: d.log})
	l, err := api.ListenUnix(cfg.API.Socket, admin)
	if err != nil {
		return err
	}
	d.servers = append(d.servers, d.api.Shutdown)
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		if err := d.api.Serve(l, api.TrustPeer); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("api stopped", "err", err)
			d.setProblem("api", fmt.Sprintf("api: %v", err))
		}
	}()
	if cfg.API.MetricsListen.IsValid() {
		ml, err := net.Listen("tcp", cfg.API.MetricsListen.String())
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
		d.servers = append(d.servers, hs.Shutdown)
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			if err := hs.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("metrics listener stopped", "err", err)
			}
		}()
		d.log.Info("serving metrics", "address", cfg.API.MetricsListen)
	}
	return nil
}

// loop waits for reloads, watchdog ticks and the end.
func (d *Daemon) loop(ctx context.Context) {
	var wd <-chan time.Time
	if iv := watchdogInterval(); iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		wd = t.C
		notify("WATCHDOG=1")
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.opts.Reload:
			if _, err := d.reload(false); err != nil {
				d.log.Error("reload failed; the running policy stays", "err", err)
			}
		case <-wd:
			notify("WATCHDOG=1")
		}
	}
}

// stop shuts down whatever started, in reverse order; the firewall table
// stays in the kernel.
func (d *Daemon) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	for i := len(d.servers) - 1; i >= 0; i-- {
		if err := d.servers[i](ctx); err != nil {
			d.log.Warn("stop server", "err", err)
		}
	}
	if d.bgCancel != nil {
		d.bgCancel()
	}
	if d.dns != nil {
		d.dns.Close()
	}
	d.stopAuditReader()
	d.bg.Wait()
	if d.audit != nil {
		if err := d.audit.Close(); err != nil {
			d.log.Warn("close audit log", "err", err)
		}
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.log.Warn("save learned addresses", "err", err)
		}
	}
	if d.fw != nil {
		d.fw.Close()
	}
}

// gatedInserter is the DNS proxy's way into the kernel, through the reload
// gate.
type gatedInserter struct{ d *Daemon }

func (g gatedInserter) Allow(elems []firewall.Element) error {
	g.d.gate.RLock()
	defer g.d.gate.RUnlock()
	elems = g.d.filterStale(elems)
	if len(elems) == 0 {
		return nil
	}
	return g.d.fw.Allow(elems)
}

// Revoke removes the elements of evicted learned entries, through the
// reload gate like Allow.
func (g gatedInserter) Revoke(elems []firewall.Element) error {
	g.d.gate.RLock()
	defer g.d.gate.RUnlock()
	return g.d.fw.Revoke(elems)
}

// startAuditReader reads the NFLOG group into the audit log, restarting
// with backoff when reading fails.
func (d *Daemon) startAuditReader(group uint16) {
	d.auditMu.Lock()
	defer d.auditMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.auditGroup, d.auditCancel, d.auditDone = group, cancel, done
	go func() {
		defer close(done)
		backoff := time.Second
		for {
			src := nflogSource(group, d.log)
			began := time.Now()
			// A reader that keeps running for a while has bound the group.
			clear := time.AfterFunc(5*time.Second, func() { d.setProblem("audit", "") })
			err := src.Run(ctx, d.audit)
			clear.Stop()
			if ctx.Err() != nil {
				return
			}
			if time.Since(began) > time.Minute {
				backoff = time.Second
			}
			d.setProblem("audit", fmt.Sprintf("audit reader (NFLOG group %d): %v", group, err))
			d.log.Error("audit reader failed; retrying", "group", group, "err", err, "retry_in", backoff)
			d.met.auditRestarts.Inc()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
		}
	}()
}

func (d *Daemon) stopAuditReader() {
	d.auditMu.Lock()
	cancel, done := d.auditCancel, d.auditDone
	d.auditCancel, d.auditDone = nil, nil
	d.auditMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// housekeeping drops expired learned entries and snapshots the store.
func (d *Daemon) housekeeping(ctx context.Context) {
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	compact := time.NewTicker(compactEvery)
	defer compact.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			if n := d.store.Sweep(); n > 0 {
				d.log.Debug("expired learned entries", "count", n)
			}
		case <-compact.C:
			if err := d.store.Compact(); err != nil {
				d.met.persistErrors.Inc()
				d.log.Warn("save learned addresses", "err", err)
			}
		}
	}
}

// noteUpstreams logs the DNS servers a policy forwards to and reports
// having none (resolv.conf empty before DHCP) as a problem.
func (d *Daemon) noteUpstreams(p *policy.Policy) {
	if len(p.DNS.Upstreams) > 0 {
		d.setProblem("dns-upstreams", "")
		from := "config"
		if p.DNS.ResolvConf != "" {
			from = p.DNS.ResolvConf
		}
		d.log.Info("dns upstreams", "servers", p.DNS.Upstreams, "from", from)
		return
	}
	msg := "no upstream DNS servers: apps get SERVFAIL for the names they may resolve"
	if p.DNS.ResolvConfProblem != "" {
		msg += " (" + p.DNS.ResolvConfProblem + "; pinholed reloads when the file changes)"
	}
	d.setProblem("dns-upstreams", msg)
	d.log.Warn(msg)
}

// setProblem records (or, with an empty message, clears) a degraded part
// for GET /net/status.
func (d *Daemon) setProblem(key, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if msg == "" {
		delete(d.problems, key)
	} else {
		d.problems[key] = msg
	}
}

func (d *Daemon) problemList() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.problems {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// statusLine is the one-line state systemd shows.
func (d *Daemon) statusLine() string {
	st := d.st.Load()
	s := fmt.Sprintf("%s, %d apps", st.pol.Mode, len(st.pol.Apps))
	if p := d.problemList(); len(p) > 0 {
		s += fmt.Sprintf(", %d problems", len(p))
	}
	return s
}
