package daemon

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/buildinfo"
	"github.com/pinhole-net/pinhole/internal/dnsproxy"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// The Daemon is the API's backend.
var _ api.Backend = (*Daemon)(nil)

// Status is GET /net/status.
func (d *Daemon) Status(context.Context) api.Status {
	st := d.st.Load()
	s := api.Status{
		NetworkTimeSync: "disabled",
		Proxy:           "disabled",
		Version:         buildinfo.String(),
		Started:         d.start.UTC().Truncate(time.Second),
		Uptime:          int64(time.Since(d.start).Seconds()),
		Config:          st.cfg.File,
		Mode:            string(st.pol.Mode),
		Unmanaged:       string(st.pol.Unmanaged),
		Apps:            len(st.pol.Apps),
		PolicyLoaded:    st.loaded.UTC().Truncate(time.Millisecond),
		Problems:        d.problemList(),
	}
	if st.cfg.Time.Enabled {
		// pinholed does not synchronise time yet.
		s.NetworkTimeSync = "incomplete"
	}
	if p, ok := d.proxy.get(); ok && p.Enabled {
		s.Proxy = "enabled"
	}
	for _, a := range d.store.Stats() {
		s.LearnedAddresses += a.Entries
	}
	d.mu.Lock()
	if d.lastReload != nil {
		r := *d.lastReload
		s.LastReload = &r
	}
	d.mu.Unlock()
	return s
}

// Rulesets is GET /net/firewall/rulesets.
func (d *Daemon) Rulesets(context.Context) ([]firewall.Ruleset, error) { return d.fw.Rulesets() }

// Proxy is GET /net/proxy.
func (d *Daemon) Proxy() (api.ProxySettings, bool) { return d.proxy.get() }

// SetProxy stores settings from POST /net/proxy.
func (d *Daemon) SetProxy(s api.ProxySettings) error {
	if err := d.proxy.set(&s); err != nil {
		return api.Errorf(http.StatusInternalServerError, api.CodeInternal, "%v", err)
	}
	d.log.Info("proxy settings changed", "enabled", s.Enabled, "address", s.Address, "port", s.Port, "auth", s.AuthenticationType)
	return nil
}

// DeleteProxy is DELETE /net/proxy.
func (d *Daemon) DeleteProxy() error {
	if err := d.proxy.set(nil); err != nil {
		return api.Errorf(http.StatusInternalServerError, api.CodeInternal, "%v", err)
	}
	d.log.Info("proxy settings deleted")
	return nil
}

// Apps is GET /apps.
func (d *Daemon) Apps(context.Context) []api.AppSummary {
	st := d.st.Load()
	packets := d.packets()
	learnedBy := d.learnedStats()
	out := make([]api.AppSummary, 0, len(st.pol.Apps))
	for _, a := range st.pol.Apps {
		out = append(out, d.summary(a, packets, learnedBy))
	}
	return out
}

// App is GET /apps/{name}; "system" shows what pinholed itself may reach.
func (d *Daemon) App(_ context.Context, name string) (api.App, bool) {
	st := d.st.Load()
	a := st.pol.App(name)
	if a == nil {
		return api.App{}, false
	}
	out := api.App{AppSummary: d.summary(a, d.packets(), d.learnedStats())}
	if m := st.manifests[name]; m != nil {
		out.Component = &api.ManifestInfo{Name: m.Name, ComponentID: m.ComponentID, ApplicationType: m.ApplicationType}
	}
	out.Rules = []api.Rule{}
	for _, h := range a.Hosts {
		out.Rules = append(out.Rules, api.Rule{Host: h.Pattern.String(), Ports: portStrings(h.Ports), Source: h.Source})
	}
	for _, r := range a.Addrs {
		out.Rules = append(out.Rules, api.Rule{Address: r.Addr.String(), Ports: portStrings(r.Ports), Source: r.Source})
	}
	out.Learned = d.store.Snapshot(name)
	if out.Learned == nil {
		out.Learned = []learned.NameEntry{}
	}
	for _, s := range d.dns.Stats().Apps {
		if s.App == name {
			out.DNSQueries = s.Queries
		}
	}
	return out, true
}

func portStrings(ps policy.Ports) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// summary describes one identity for GET /apps.
func (d *Daemon) summary(a *policy.App, packets map[string][2]uint64, lst map[string]learned.AppStats) api.AppSummary {
	s := api.AppSummary{
		Name:             a.Name,
		Identity:         d.identity(a),
		Manifest:         a.ManifestPath,
		DNSPort:          a.DNSPort,
		Hosts:            len(a.Hosts),
		Addresses:        len(a.Addrs),
		TCPServerPorts:   a.TCPServerPorts,
		UDPServerPorts:   a.UDPServerPorts,
		LearnedNames:     lst[a.Name].Names,
		LearnedAddresses: lst[a.Name].Addresses,
	}
	for _, e := range d.store.Snapshot(a.Name) {
		s.LearnedHosts = append(s.LearnedHosts, e.Name)
	}
	p := packets[a.Name]
	s.Packets = api.Packets{Allowed: p[0], Denied: p[1]}
	return s
}

func (d *Daemon) identity(a *policy.App) api.Identity {
	id := api.Identity{Kind: a.Identity.Kind.String(), User: a.Identity.User}
	switch a.Identity.Kind {
	case policy.ByUID:
		uid := a.Identity.UID
		id.UID = &uid
	case policy.ByCgroup:
		id.Cgroup = a.Identity.Cgroup
		id.CgroupID = d.cg.idOf(a.Name)
	case policy.ByMark:
		id.Mark = a.Identity.Mark
	}
	return id
}

// packets reads the per-app counters; empty if the firewall cannot be read.
func (d *Daemon) packets() map[string][2]uint64 {
	rs, err := d.fw.Rulesets()
	if err != nil {
		d.log.Warn("read firewall counters", "err", err)
	}
	return packetsByApp(rs)
}

func (d *Daemon) learnedStats() map[string]learned.AppStats {
	out := map[string]learned.AppStats{}
	for _, s := range d.store.Stats() {
		out[s.App] = s
	}
	return out
}

// AuditQuery is GET /audit.
func (d *Daemon) AuditQuery(f audit.Filter) []audit.Record { return d.audit.Query(f) }

// AuditSubscribe is GET /audit?follow=1.
func (d *Daemon) AuditSubscribe(ctx context.Context) (<-chan audit.Record, error) {
	return d.audit.Subscribe(ctx)
}

// DNSStats is GET /dns/stats.
func (d *Daemon) DNSStats() dnsproxy.Stats { return d.dns.Stats() }

// Reload is POST /config/reload.
func (d *Daemon) Reload(_ context.Context, req api.ReloadRequest) (api.ReloadResult, error) {
	return d.reload(req.DryRun)
}

// auditNamer tells the audit which names an app learned an address for, and
// which identities learned it at all.
type auditNamer struct{ d *Daemon }

func (n auditNamer) Names(app string, addr netip.Addr) []string { return n.d.store.Names(app, addr) }

func (n auditNamer) LearnedBy(addr netip.Addr) []string {
	var out []string
	for _, a := range n.d.st.Load().pol.Identities() {
		if len(n.d.store.Names(a.Name, addr)) > 0 {
			out = append(out, a.Name)
		}
	}
	return out
}
