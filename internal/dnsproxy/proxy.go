// Package dnsproxy runs the per-app DNS stubs: each app's queries are
// redirected by the firewall to its own loopback port, where names the app
// may not reach get NXDOMAIN and the others are forwarded upstream; the
// addresses in the answer are learned and inserted into the app's kernel
// sets before the answer goes back.
//
// Unicast DNS-SD is supported: a PTR or SRV answer for an allowed
// "_svc._tcp.domain" allows the SRV targets and their addresses. Multicast
// DNS on ".local" is not proxied (yet).
package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"

	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Defaults for zero policy.DNS fields.
const (
	DefaultInsertTimeout = 100 * time.Millisecond
	DefaultQueryTimeout  = 2 * time.Second
	DefaultRateLimit     = 200 // queries per second per app
	DefaultBurst         = 400
	DefaultMaxInFlight   = 64
	// maxDeadline bounds one query's whole upstream work, so that the app
	// gets SERVFAIL before its resolver (5 s in glibc and musl) gives up.
	maxDeadline = 4 * time.Second
	// maxTCPConns caps the TCP connections of one stub listener.
	maxTCPConns = 32
	// udpSize is the EDNS0 buffer size we advertise (DNS flag day 2020).
	udpSize = 1232
)

// Options configure a Proxy.
type Options struct {
	// Policy is the initial policy; Update replaces it.
	Policy *policy.Policy
	// Store is where answers are learned; restore it before Start.
	Store *learned.Store
	// Inserter puts learned elements into the kernel.
	Inserter Inserter
	// Listen are the addresses the stubs listen on; nil means 127.0.0.1
	// and ::1, where the firewall's redirect sends the apps' queries.
	Listen []netip.Addr
	// Audit, if non-nil, records the lookups audit mode answers that enforce
	// mode would have refused.
	Audit Auditor
	// Registerer, if non-nil, gets the proxy's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// exchanger replaces the upstream forwarder in tests.
	exchanger exchanger
}

// Proxy is the set of per-app DNS stubs.
type Proxy struct {
	store  *learned.Store
	log    *slog.Logger
	audit  Auditor
	listen []netip.Addr
	// fwd is the forwarder of the current upstreams, mark and timeout;
	// Update replaces it when they change. exch, if set, replaces it (tests).
	fwd    atomic.Pointer[forwarder]
	exch   exchanger
	commit *committer
	revs   *revokingInserter
	pol    atomic.Pointer[policy.Policy]

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	started  bool
	closed   bool
	stubs    map[string]*stub // by app name
	runtimes map[string]*appRuntime

	hold            histogram
	insertTimeouts  atomic.Uint64
	insertOverflows atomic.Uint64
}

// appRuntime is the per-app state that outlives stub restarts.
type appRuntime struct {
	name    string
	limiter *rate.Limiter
	sem     atomic.Pointer[chan struct{}]
	counts  [numVerdicts]atomic.Uint64
	logLim  *rate.Limiter
	dropped atomic.Uint64 // log lines suppressed by logLim
	// auditLim bounds the refused lookups written to the audit log, as the
	// kernel's log rule bounds denied packets.
	auditLim *rate.Limiter
}

// New builds a Proxy. Nothing listens until Start.
func New(opts Options) (*Proxy, error) {
	if opts.Policy == nil || opts.Store == nil || opts.Inserter == nil {
		return nil, errors.New("dnsproxy: Policy, Store and Inserter are required")
	}
	px := &Proxy{
		store:    opts.Store,
		log:      opts.Logger,
		audit:    opts.Audit,
		listen:   opts.Listen,
		stubs:    map[string]*stub{},
		runtimes: map[string]*appRuntime{},
	}
	if px.log == nil {
		px.log = slog.New(slog.DiscardHandler)
	}
	if px.listen == nil {
		px.listen = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	p := opts.Policy
	px.fwd.Store(forwarderFor(p))
	px.exch = opts.exchanger
	px.pol.Store(p)
	px.ctx, px.cancel = context.WithCancel(context.Background())
	px.revs = &revokingInserter{ins: opts.Inserter, store: opts.Store, log: px.log}
	px.revs.rev, _ = opts.Inserter.(Revoker)
	px.commit = newCommitter(px.revs, opts.Store, px.log)
	for _, a := range p.Identities() {
		px.runtimeLocked(a.Name, p.DNS)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newCollector(px)); err != nil {
			px.commit.close()
			return nil, fmt.Errorf("register dns metrics: %w", err)
		}
	}
	return px, nil
}

func durOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// runtimeLocked returns the app's runtime, creating it or applying new
// limits. px.mu is held, or px is not shared yet.
func (px *Proxy) runtimeLocked(app string, d policy.DNS) *appRuntime {
	limit, burst, inflight := rate.Limit(d.RateLimit), d.Burst, d.MaxInFlight
	if limit <= 0 {
		limit = DefaultRateLimit
	}
	if burst <= 0 {
		burst = max(DefaultBurst, int(limit))
	}
	if inflight <= 0 {
		inflight = DefaultMaxInFlight
	}
	rt := px.runtimes[app]
	if rt == nil {
		rt = &appRuntime{name: app, limiter: rate.NewLimiter(limit, burst), logLim: rate.NewLimiter(1, 10), auditLim: rate.NewLimiter(10, 50)}
		px.runtimes[app] = rt
	} else {
		rt.limiter.SetLimit(limit)
		rt.limiter.SetBurst(burst)
	}
	if sem := rt.sem.Load(); sem == nil || cap(*sem) != inflight {
		ch := make(chan struct{}, inflight)
		rt.sem.Store(&ch)
	}
	return rt
}

// Start opens every app's stub. It returns the errors of stubs that could
// not listen; the others run.
func (px *Proxy) Start() error {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.closed {
		return errors.New("dnsproxy: closed")
	}
	px.started = true
	return px.syncStubsLocked(px.pol.Load())
}

// Update swaps in a new policy: names are checked against it from now on,
// stubs of removed apps or changed ports stop, new ones start, and learned
// entries it no longer allows are dropped.
func (px *Proxy) Update(p *policy.Policy) error {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.closed {
		return errors.New("dnsproxy: closed")
	}
	px.pol.Store(p)
	px.swapForwarder(p)
	for _, a := range p.Identities() {
		px.runtimeLocked(a.Name, p.DNS)
	}
	px.store.SetLimits(learned.LimitsFrom(p.DNS))
	px.store.Retain(p)
	if !px.started {
		return nil
	}
	return px.syncStubsLocked(p)
}

func (px *Proxy) syncStubsLocked(p *policy.Policy) error {
	want := map[string]uint16{}
	for _, a := range p.Apps {
		if a.DNSPort != 0 {
			want[a.Name] = a.DNSPort
		}
	}
	for name, st := range px.stubs {
		if want[name] != st.port {
			st.shutdown()
			delete(px.stubs, name)
		}
	}
	var errs []error
	for name, port := range want {
		if px.stubs[name] != nil {
			continue
		}
		st, err := px.startStub(px.runtimes[name], port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		px.stubs[name] = st
	}
	return errors.Join(errs...)
}

// Close stops every stub, ends the queries in progress and waits for them
// and for the last insert transaction.
func (px *Proxy) Close() error {
	px.mu.Lock()
	if px.closed {
		px.mu.Unlock()
		return nil
	}
	px.closed = true
	stubs := px.stubs
	px.stubs = map[string]*stub{}
	px.mu.Unlock()
	// Upstream waits end first (their queries get SERVFAIL), so that a
	// restart is not held up by a slow upstream.
	px.cancel()
	for _, st := range stubs {
		st.shutdown()
	}
	px.commit.close()
	px.fwd.Load().close()
	return nil
}

// Ports returns the stub ports listening now, by app.
func (px *Proxy) Ports() map[string]uint16 {
	px.mu.Lock()
	defer px.mu.Unlock()
	out := map[string]uint16{}
	for name, st := range px.stubs {
		out[name] = st.port
	}
	return out
}

// stub is one app's listeners: UDP and TCP on each listen address.
type stub struct {
	port    uint16
	udp     []*udpStub
	servers []*dns.Server // TCP
	wg      sync.WaitGroup
}

func (px *Proxy) startStub(rt *appRuntime, port uint16) (*stub, error) {
	st := &stub{port: port}
	// Enough workers for the in-flight cap plus some that answer blocked
	// and rate-limited queries meanwhile.
	workers := cap(*rt.sem.Load()) + 16
	for _, addr := range px.listen {
		ap := netip.AddrPortFrom(addr, port)
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			if addr.Is6() && isAddrNotAvail(err) {
				px.log.Warn("dns stub without IPv6 loopback", "app", rt.name, "err", err)
				continue
			}
			st.shutdown()
			return nil, fmt.Errorf("dns stub for %s: %w", rt.name, err)
		}
		l, err := net.Listen("tcp", ap.String())
		if err != nil {
			pc.Close()
			st.shutdown()
			return nil, fmt.Errorf("dns stub for %s: %w", rt.name, err)
		}
		st.udp = append(st.udp, newUDPStub(pc, workers, workerIdle, px.log, func(req *dns.Msg) *dns.Msg {
			resp, _ := px.answer(px.ctx, rt, req, false)
			if resp != nil {
				resp.Truncate(clientUDPSize(req))
			}
			return resp
		}))
		srv := &dns.Server{Listener: netutil.LimitListener(l, maxTCPConns), Handler: px.handler(rt, true)}
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		st.servers = append(st.servers, srv)
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				px.log.Error("dns stub stopped", "app", rt.name, "err", err)
			}
		}()
		<-started
	}
	px.log.Info("dns stub listening", "app", rt.name, "port", port)
	return st, nil
}

func isAddrNotAvail(err error) bool { return errors.Is(err, syscall.EADDRNOTAVAIL) }

// shutdown stops the listeners and waits for the queries they serve.
func (st *stub) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, u := range st.udp {
		u.close()
	}
	for _, srv := range st.servers {
		srv.ShutdownContext(ctx)
	}
	st.wg.Wait()
}

func (px *Proxy) handler(rt *appRuntime, tcp bool) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp, _ := px.answer(px.ctx, rt, req, tcp)
		if resp == nil {
			return
		}
		if !tcp {
			resp.Truncate(clientUDPSize(req))
		}
		if err := w.WriteMsg(resp); err != nil {
			px.log.Debug("write dns answer", "app", rt.name, "err", err)
		}
	})
}

func clientUDPSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return int(min(max(opt.UDPSize(), dns.MinMsgSize), udpSize*4))
	}
	return dns.MinMsgSize
}

// Stats is the proxy's state for the API.
type Stats struct {
	Apps      []AppStats      `json:"apps"`
	Upstreams []UpstreamStats `json:"upstreams"`
	Insert    InsertStats     `json:"insert"`
}

// AppStats counts one identity's queries by verdict and what it learned.
type AppStats struct {
	App     string            `json:"app"`
	Port    uint16            `json:"port,omitempty"`
	Queries map[string]uint64 `json:"queries"`
	Learned learned.AppStats  `json:"learned"`
}

// UpstreamStats counts the tries sent to one upstream server.
type UpstreamStats struct {
	Addr    netip.AddrPort `json:"address"`
	Queries uint64         `json:"queries"`
	Errors  uint64         `json:"errors"`
}

// InsertStats describes the kernel inserts.
type InsertStats struct {
	Batches   uint64    `json:"batches"`
	Elements  uint64    `json:"elements"`
	Timeouts  uint64    `json:"timeouts"`
	Errors    uint64    `json:"errors"`
	QueueFull uint64    `json:"queue_full"`
	Hold      HoldStats `json:"hold"`
	// Revoked counts elements removed because a cap evicted their entries,
	// RevokeErrors the revocations that failed.
	Revoked      uint64 `json:"revoked"`
	RevokeErrors uint64 `json:"revoke_errors"`
}

// Stats returns a snapshot of the counters, apps sorted by name.
func (px *Proxy) Stats() Stats {
	learnedBy := map[string]learned.AppStats{}
	for _, st := range px.store.Stats() {
		learnedBy[st.App] = st
	}
	px.mu.Lock()
	var s Stats
	for name, rt := range px.runtimes {
		as := AppStats{App: name, Queries: map[string]uint64{}, Learned: learnedBy[name]}
		if st := px.stubs[name]; st != nil {
			as.Port = st.port
		}
		for v := range numVerdicts {
			as.Queries[v.String()] = rt.counts[v].Load()
		}
		s.Apps = append(s.Apps, as)
	}
	px.mu.Unlock()
	slices.SortFunc(s.Apps, func(a, b AppStats) int {
		if a.App < b.App {
			return -1
		}
		if a.App > b.App {
			return 1
		}
		return 0
	})
	for _, up := range px.fwd.Load().ups {
		s.Upstreams = append(s.Upstreams, UpstreamStats{Addr: up.addr, Queries: up.queries.Load(), Errors: up.errors.Load()})
	}
	s.Insert = InsertStats{
		Batches:   px.commit.batches.Load(),
		Elements:  px.commit.elements.Load(),
		Timeouts:  px.insertTimeouts.Load(),
		Errors:    px.commit.errors.Load(),
		QueueFull: px.insertOverflows.Load(),
		Hold:      px.hold.stats(),

		Revoked:      px.revs.revoked.Load(),
		RevokeErrors: px.revs.errors.Load(),
	}
	return s
}

// Errors of Resolve.
var (
	ErrBlocked     = errors.New("name not allowed by policy")
	ErrNotFound    = errors.New("no such name")
	ErrRebinding   = errors.New("answer refused by rebinding protection")
	ErrRateLimited = errors.New("query rate limit reached")
	ErrUpstream    = errors.New("upstream DNS failed")
)

// Resolve looks name up for app (policy.SystemName for pinholed itself)
// through the same path as the app's stub: policy check, upstream, learning
// and kernel insert. It returns the addresses at the end of the CNAME chain.
func (px *Proxy) Resolve(ctx context.Context, app, name string, qtype uint16) ([]netip.Addr, error) {
	px.mu.Lock()
	rt := px.runtimes[app]
	px.mu.Unlock()
	if rt == nil {
		return nil, fmt.Errorf("resolve %s for %s: no such app", name, app)
	}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	resp, v := px.answer(ctx, rt, req, false)
	switch v {
	case Blocked:
		return nil, fmt.Errorf("resolve %s for %s: %w", name, app, ErrBlocked)
	case Rebinding:
		return nil, fmt.Errorf("resolve %s for %s: %w", name, app, ErrRebinding)
	case RateLimited:
		return nil, fmt.Errorf("resolve %s for %s: %w", name, app, ErrRateLimited)
	case UpstreamError, Invalid, NoUpstream:
		return nil, fmt.Errorf("resolve %s for %s: %w", name, app, ErrUpstream)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, fmt.Errorf("resolve %s for %s: %w", name, app, ErrNotFound)
	default:
		return nil, fmt.Errorf("resolve %s for %s: %w: %s", name, app, ErrUpstream, dns.RcodeToString[resp.Rcode])
	}
	q := resp.Question[0]
	end, ttl := followCNAME(resp.Answer, canonical(q.Name))
	var out []netip.Addr
	for _, a := range addrsOf(resp.Answer, end, ttl) {
		out = append(out, a.Addr)
	}
	return out, nil
}

// LookupNetIP resolves A and AAAA for app at the same time, like
// net.Resolver.LookupNetIP, and returns the IPv4 addresses first.
func (px *Proxy) LookupNetIP(ctx context.Context, app, name string) ([]netip.Addr, error) {
	var v6 []netip.Addr
	var err6 error
	done := make(chan struct{})
	go func() {
		defer close(done)
		v6, err6 = px.Resolve(ctx, app, name, dns.TypeAAAA)
	}()
	v4, err4 := px.Resolve(ctx, app, name, dns.TypeA)
	<-done
	out := append(v4, v6...)
	if len(out) > 0 {
		return out, nil
	}
	if err4 != nil {
		return nil, err4
	}
	if err6 != nil {
		return nil, err6
	}
	return nil, fmt.Errorf("resolve %s for %s: %w: no addresses", name, app, ErrNotFound)
}
