package daemon

import (
	"fmt"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// filterWindow is how long after a reload the DNS inserts are checked
// against the learned store: an answer computed under the old policy may
// still be on its way to the kernel.
const filterWindow = 10 * time.Second

// reload loads the config and manifests again and, unless dryRun, applies
// them: the new table (keeping the learned elements the new policy still
// allows) in one transaction, then the DNS stubs. On any failure the
// running policy stays and the error says why.
func (d *Daemon) reload(dryRun bool) (api.ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	start := time.Now()
	old := d.st.Load()
	res := api.ReloadResult{DryRun: dryRun}
	if !dryRun {
		notify("RELOADING=1", sd.SdNotifyMonotonicUsec(), "STATUS=reloading")
		defer func() { notify("READY=1", "STATUS="+d.statusLine()) }()
	}
	st, warnings, err := load(d.opts.ConfigPath)
	for _, w := range warnings {
		res.Warnings = append(res.Warnings, w.String())
	}
	if err != nil {
		if !dryRun {
			d.reloadDone(err)
		}
		return res, err
	}
	res.Apps = len(st.pol.Apps)
	res.Added, res.Removed, res.Changed = diffApps(old.pol, st.pol)
	res.RestartRequired = restartRequired(old, st)
	if dryRun {
		res.KeptLearned = len(d.store.Elements(st.pol, d.store.Now()))
		res.Took = ms(time.Since(start))
		return res, nil
	}

	d.gate.Lock()
	elems := d.store.Elements(st.pol, d.store.Now())
	if err := d.fw.Apply(st.pol, elems); err != nil {
		d.gate.Unlock()
		e := &api.Error{Status: http.StatusInternalServerError, Code: api.CodeReloadFailed,
			Message: fmt.Sprintf("install the new firewall table (the old one stays): %v", err)}
		d.reloadDone(e)
		return res, e
	}
	d.store.Acknowledge(elems, d.store.Now())
	d.st.Store(st)
	d.filterUntil.Store(time.Now().Add(filterWindow).UnixNano())
	dnsErr := d.dns.Update(st.pol)
	d.gate.Unlock()
	res.KeptLearned = len(elems)
	res.DNSUpstreams = upstreamStrings(d.dns.Upstreams())

	if dnsErr != nil {
		d.setProblem("dns", fmt.Sprintf("dns stubs: %v", dnsErr))
		res.Warnings = append(res.Warnings, fmt.Sprintf("dns stubs: %v", dnsErr))
		d.log.Error("some dns stubs could not listen after reload", "err", dnsErr)
	} else {
		d.setProblem("dns", "")
	}
	d.cg.setPolicy(st.pol)
	d.noteUpstreams(st.pol)
	d.auditMu.Lock()
	group := d.auditGroup
	d.auditMu.Unlock()
	if st.pol.NFLOGGroup != group {
		d.stopAuditReader()
		d.met.auditRestarts.Inc()
		d.startAuditReader(st.pol.NFLOGGroup)
	}
	d.level.Set(st.cfg.Log.Level)
	d.proxy.configChanged(st.cfg.Proxy)
	d.met.setApps(st.pol)
	d.reloadDone(nil)
	debug.FreeOSMemory()
	res.Took = ms(time.Since(start))
	d.log.Info("reloaded", "apps", res.Apps, "added", res.Added, "removed", res.Removed, "changed", res.Changed,
		"kept_learned", res.KeptLearned, "dns_upstreams", res.DNSUpstreams, "restart_required", res.RestartRequired, "took", time.Since(start))
	return res, nil
}

func upstreamStrings(ups []netip.AddrPort) []string {
	out := []string{}
	for _, u := range ups {
		out = append(out, u.String())
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reloadDone records a reload's outcome for status and metrics.
func (d *Daemon) reloadDone(err error) {
	now := time.Now()
	out := &api.ReloadOutcome{At: now, OK: err == nil}
	if err != nil {
		out.Error = err.Error()
		d.met.reloads.WithLabelValues("failure").Inc()
		d.met.lastReloadOK.Set(0)
		d.log.Error("reload failed; the running policy stays", "err", err)
	} else {
		d.met.reloads.WithLabelValues("success").Inc()
		d.met.lastReloadOK.Set(1)
		d.met.lastReload.Set(float64(now.Unix()))
	}
	d.mu.Lock()
	d.lastReload = out
	d.mu.Unlock()
}

// diffApps names the apps added, removed and changed between two policies.
func diffApps(old, nu *policy.Policy) (added, removed, changed []string) {
	before := map[string]string{}
	for _, a := range old.Apps {
		before[a.Name] = fingerprint(a)
	}
	for _, a := range nu.Apps {
		fp, ok := before[a.Name]
		switch {
		case !ok:
			added = append(added, a.Name)
		case fp != fingerprint(a):
			changed = append(changed, a.Name)
		}
		delete(before, a.Name)
	}
	for name := range before {
		removed = append(removed, name)
	}
	slices.Sort(removed)
	return added, removed, changed
}

// fingerprint is an app's compiled rules as text, to compare them.
func fingerprint(a *policy.App) string {
	return fmt.Sprintf("%+v|%+v|%+v|%v|%v|%d", a.Identity, a.Hosts, a.Addrs, a.TCPServerPorts, a.UDPServerPorts, a.DNSPort)
}

// restartRequired names the settings that differ between two configs but
// are only read at start.
func restartRequired(old, nu *state) []string {
	var out []string
	o, n := old.cfg, nu.cfg
	add := func(changed bool, key string) {
		if changed {
			out = append(out, key)
		}
	}
	add(o.API.Socket != n.API.Socket, "api.socket")
	add(o.API.Group != n.API.Group, "api.group")
	add(o.API.MetricsListen != n.API.MetricsListen, "api.metrics_listen")
	add(o.StateDir != n.StateDir, "state_dir")
	add(o.Log.Format != n.Log.Format, "log.format")
	add(o.ServiceLink != n.ServiceLink, "service_link")
	// dns.upstreams, dns.query_timeout and system_mark apply on reload: the
	// DNS proxy builds a new forwarder when they change.
	return out
}

// configChanged takes the config file's proxy after a reload, unless the
// API set (or deleted) the settings, which then win.
func (ps *proxyStore) configChanged(cfg config.Proxy) {
	if ps.fromAPI() {
		return
	}
	s, err := proxyFromConfig(cfg)
	if err != nil {
		return
	}
	ps.mu.Lock()
	ps.cur = s
	ps.mu.Unlock()
}

// filterStale drops, shortly after a reload, elements of answers computed
// under the old policy that the new one no longer allows: their app is
// gone, or the store no longer holds the address for it.
func (d *Daemon) filterStale(elems []firewall.Element) []firewall.Element {
	if time.Now().UnixNano() > d.filterUntil.Load() {
		return elems
	}
	p := d.st.Load().pol
	out := elems[:0:0]
	for _, e := range elems {
		if p.App(e.App) == nil || len(d.store.Names(e.App, e.Addr)) == 0 {
			d.log.Debug("dropped an insert the new policy does not allow", "element", e.String())
			continue
		}
		out = append(out, e)
	}
	return out
}
