package dnsproxy

import (
	"context"
	"net/netip"
	"slices"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// forwarderFor builds the forwarder of p's upstreams, system mark and query
// timeout.
func forwarderFor(p *policy.Policy) *forwarder {
	return newForwarder(p.DNS.Upstreams, p.SystemMark, durOr(p.DNS.QueryTimeout, DefaultQueryTimeout))
}

// sameForwarding reports whether f already forwards the way p wants.
func sameForwarding(f *forwarder, p *policy.Policy) bool {
	if f.mark != p.SystemMark || f.tryTimeout != durOr(p.DNS.QueryTimeout, DefaultQueryTimeout) || len(f.ups) != len(p.DNS.Upstreams) {
		return false
	}
	for i, up := range f.ups {
		if up.addr != p.DNS.Upstreams[i] {
			return false
		}
	}
	return true
}

// swapForwarder replaces the forwarder when p changes the upstreams, the
// mark or the timeout. Queries already on their way keep the old one, which
// is closed at once: they may fail once (SERVFAIL) and the app retries on
// the new one. Counters of upstreams that stay carry over.
func (px *Proxy) swapForwarder(p *policy.Policy) {
	old := px.fwd.Load()
	if sameForwarding(old, p) {
		return
	}
	nu := forwarderFor(p)
	for _, up := range nu.ups {
		if i := slices.IndexFunc(old.ups, func(o *upstream) bool { return o.addr == up.addr }); i >= 0 {
			up.queries.Store(old.ups[i].queries.Load())
			up.errors.Store(old.ups[i].errors.Load())
		}
	}
	px.fwd.Store(nu)
	old.close()
	px.log.Info("dns upstreams changed", "upstreams", addrList(nu.ups), "was", addrList(old.ups))
}

func addrList(ups []*upstream) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(ups))
	for _, up := range ups {
		out = append(out, up.addr)
	}
	return out
}

// Upstreams returns the upstream servers queries go to now.
func (px *Proxy) Upstreams() []netip.AddrPort { return addrList(px.fwd.Load().ups) }

// exchange sends q upstream through the test exchanger or the current
// forwarder.
func (px *Proxy) exchange(ctx context.Context, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	if px.exch != nil {
		return px.exch.exchange(ctx, q, tcp)
	}
	return px.fwd.Load().exchange(ctx, q, tcp)
}
