package dnsproxy

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// TestNoUpstreams: a policy without upstream servers (resolv.conf empty at
// boot) answers allowed names SERVFAIL saying so and blocked names
// NXDOMAIN; an Update that brings a server makes the names resolve.
func TestNoUpstreams(t *testing.T) {
	tp := newTestProxy(t, testPolicy(t, nil), nil, nil)
	resp, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, true)
	if v != NoUpstream || resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("allowed name without upstreams: verdict %v rcode %s, want no_upstream SERVFAIL", v, dns.RcodeToString[resp.Rcode])
	}
	if e := edeOf(resp); e == nil || e.InfoCode != dns.ExtendedErrorCodeNotReady {
		t.Errorf("EDE = %+v, want Not Ready", e)
	}
	if resp, v := tp.ask(t, "weather", "evil.example", dns.TypeA, false); v != Blocked || resp.Rcode != dns.RcodeNameError {
		t.Errorf("blocked name without upstreams: verdict %v rcode %s, want blocked NXDOMAIN", v, dns.RcodeToString[resp.Rcode])
	}
	if got := tp.Stats().Apps; got[len(got)-1].App != "weather" || got[len(got)-1].Queries["no_upstream"] != 1 {
		t.Errorf("Stats: %+v, want weather with 1 no_upstream query", got)
	}

	up := startUpstream(t, labZone.handler(t))
	if err := tp.Update(testPolicy(t, []netip.AddrPort{up.addr})); err != nil {
		t.Fatal(err)
	}
	if resp, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false); v != Allowed || len(resp.Answer) != 1 {
		t.Errorf("after Update with an upstream: verdict %v, answer %v", v, resp.Answer)
	}
}
