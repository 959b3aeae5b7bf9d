package dnsproxy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// TestUpdateUpstreams: a policy with other upstream servers sends the next
// queries to them, through the stub as an app would; a policy with the same
// ones keeps the forwarder and its counters.
func TestUpdateUpstreams(t *testing.T) {
	oldUp := startUpstream(t, zone{"x.cdn.example.": {"60 IN A 198.18.2.1"}}.handler(t))
	newUp := startUpstream(t, zone{"x.cdn.example.": {"60 IN A 198.18.2.2"}}.handler(t))
	port := freePort(t)
	p1 := testPolicy(t, []netip.AddrPort{oldUp.addr}, port, 0)
	tp := newTestProxy(t, p1, nil, nil)
	if err := tp.Start(); err != nil {
		t.Fatal(err)
	}
	stub := fmt.Sprintf("127.0.0.1:%d", port)
	if resp := exchange(t, stub, "udp", "x.cdn.example", dns.TypeA, false); len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "198.18.2.1" {
		t.Fatalf("before Update: %v", resp)
	}

	// Same upstreams, other rules: the forwarder stays.
	f1 := tp.fwd.Load()
	if err := tp.Update(testPolicy(t, []netip.AddrPort{oldUp.addr}, port, 0)); err != nil {
		t.Fatal(err)
	}
	if tp.fwd.Load() != f1 {
		t.Error("Update with the same upstreams, mark and timeout replaced the forwarder")
	}

	p2 := testPolicy(t, []netip.AddrPort{newUp.addr}, port, 0)
	if err := tp.Update(p2); err != nil {
		t.Fatal(err)
	}
	if got := tp.Upstreams(); !slices.Equal(got, []netip.AddrPort{newUp.addr}) {
		t.Errorf("Upstreams after Update = %v, want [%s]", got, newUp.addr)
	}
	before := len(oldUp.seen())
	for _, proto := range []string{"udp", "tcp"} {
		resp := exchange(t, stub, proto, "x.cdn.example", dns.TypeA, false)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "198.18.2.2" {
			t.Errorf("after Update over %s: want the new upstream's 198.18.2.2, got %v", proto, resp)
		}
	}
	if n := len(oldUp.seen()) - before; n != 0 {
		t.Errorf("the old upstream got %d queries after Update", n)
	}
	if n := len(newUp.seen()); n != 2 {
		t.Errorf("the new upstream got %d queries, want 2", n)
	}
	st := tp.Stats()
	if len(st.Upstreams) != 1 || st.Upstreams[0].Addr != newUp.addr || st.Upstreams[0].Queries != 2 {
		t.Errorf("Stats().Upstreams = %+v, want %s with 2 queries", st.Upstreams, newUp.addr)
	}

	// The system mark and the query timeout are the forwarder's too.
	f2 := tp.fwd.Load()
	p3 := testPolicy(t, []netip.AddrPort{newUp.addr}, port, 0)
	p3.SystemMark = 0x1234
	if err := tp.Update(policy.Finish(p3)); err != nil {
		t.Fatal(err)
	}
	f3 := tp.fwd.Load()
	if f3 == f2 || f3.mark != 0x1234 {
		t.Errorf("Update with a new system mark: forwarder mark %#x (replaced: %v), want 0x1234", f3.mark, f3 != f2)
	}
	if f3.ups[0].queries.Load() != 2 {
		t.Errorf("the counters of an upstream that stayed did not carry over: %d queries, want 2", f3.ups[0].queries.Load())
	}
	p4 := testPolicy(t, []netip.AddrPort{newUp.addr}, port, 0)
	p4.SystemMark = 0x1234
	p4.DNS.QueryTimeout *= 2
	if err := tp.Update(policy.Finish(p4)); err != nil {
		t.Fatal(err)
	}
	if f4 := tp.fwd.Load(); f4 == f3 || f4.tryTimeout != p4.DNS.QueryTimeout {
		t.Errorf("Update with a new query timeout: forwarder timeout %v, want %v", f4.tryTimeout, p4.DNS.QueryTimeout)
	}
}
