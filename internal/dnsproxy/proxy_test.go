package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

var eqAddr = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

var labZone = zone{
	"api.example.com.":                        {"60 IN CNAME edge.example.net.", "60 IN TXT \"hello\""},
	"edge.example.net.":                       {"30 IN CNAME e1.cdn-provider.example."},
	"e1.cdn-provider.example.":                {"300 IN A 198.18.1.1", "300 IN A 198.18.1.2", "300 IN AAAA 2001:db8::11"},
	"x.cdn.example.":                          {"20 IN A 198.18.2.1"},
	"news.example.com.":                       {"5 IN A 198.18.3.1"},
	"rebind.cdn.example.":                     {"60 IN A 198.18.2.9", "60 IN A 10.1.2.3"},
	"lab.example.com.":                        {"60 IN A 192.168.7.7"},
	"printer.lan.":                            {"60 IN A 192.168.7.8"},
	"_ipp._tcp.example.com.":                  {"60 IN PTR Office\\ Printer._ipp._tcp.example.com."},
	"office\\ printer._ipp._tcp.example.com.": {"60 IN SRV 0 0 631 printer.example.com."},
	"printer.example.com.":                    {"120 IN A 198.18.4.4"},
	"time.example.com.":                       {"60 IN A 198.18.5.5"},
	"big.cdn.example.":                        bigRecords(),
}

// bigRecords makes an answer too large for 512 bytes.
func bigRecords() []string {
	var out []string
	for i := range 60 {
		out = append(out, fmt.Sprintf("60 IN A 198.18.9.%d", i+1))
	}
	return out
}

func TestBlocked(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, nil)
	for _, tt := range []struct {
		app, name string
		qtype     uint16
	}{
		{"weather", "evil.example.com", dns.TypeA},
		{"weather", "news.example.com", dns.TypeAAAA}, // another app's name
		{"weather", "cdn.example", dns.TypeA},         // wildcard never matches its apex
		{"news", "api.example.com", dns.TypeA},
		{"weather", "1.0.18.198.in-addr.arpa", dns.TypePTR},
		{"weather", ".", dns.TypeNS},
	} {
		for _, edns := range []bool{false, true} {
			resp, v := tp.ask(t, tt.app, tt.name, tt.qtype, edns)
			if v != Blocked || resp.Rcode != dns.RcodeNameError {
				t.Errorf("%s %s (edns %v): verdict %v rcode %s, want blocked NXDOMAIN", tt.app, tt.name, edns, v, dns.RcodeToString[resp.Rcode])
			}
			ede := edeOf(resp)
			switch {
			case edns && (ede == nil || ede.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(ede.ExtraText, "app "+tt.app)):
				t.Errorf("%s %s: EDE = %+v, want code 15 naming the app", tt.app, tt.name, ede)
			case !edns && resp.IsEdns0() != nil:
				t.Errorf("%s %s: answer without EDNS0 in the query has an OPT record", tt.app, tt.name)
			}
		}
	}
	if got := up.seen(); len(got) != 0 {
		t.Errorf("upstream saw blocked queries: %+v", got)
	}
	if n := len(tp.ins.all()); n != 0 {
		t.Errorf("blocked queries inserted %d elements", n)
	}
	st := tp.Stats()
	for _, as := range st.Apps {
		if as.App == "weather" && as.Queries["blocked"] != 10 {
			t.Errorf("weather blocked count = %d, want 10", as.Queries["blocked"])
		}
	}
}

func TestAllowedCNAMEChain(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, nil)

	resp, v := tp.ask(t, "weather", "API.Example.COM", dns.TypeA, true)
	if v != Allowed || resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("verdict %v rcode %s, want allowed NOERROR", v, dns.RcodeToString[resp.Rcode])
	}
	if len(resp.Answer) != 4 { // two CNAMEs, two A
		t.Errorf("answer has %d records, want 4:\n%v", len(resp.Answer), resp)
	}
	if resp.Question[0].Name != "API.Example.COM." {
		t.Errorf("question name %q, want the app's spelling", resp.Question[0].Name)
	}
	resp, _ = tp.ask(t, "weather", "api.example.com", dns.TypeAAAA, false)
	if len(resp.Answer) != 3 {
		t.Errorf("AAAA answer has %d records, want 3", len(resp.Answer))
	}
	// Chain TTL is the CNAME's 30 s: lifetime 30 s + 1 s grace.
	want := []learned.Element{
		{App: "weather", Addr: a("198.18.1.1"), Proto: policy.TCP, Port: 443, Timeout: 31 * time.Second},
		{App: "weather", Addr: a("198.18.1.2"), Proto: policy.TCP, Port: 443, Timeout: 31 * time.Second},
		{App: "weather", Addr: a("2001:db8::11"), Proto: policy.TCP, Port: 443, Timeout: 31 * time.Second},
	}
	if diff := cmp.Diff(want, tp.ins.all(), eqAddr, cmpopts.EquateApproxTime(0), approxTimeout); diff != "" {
		t.Errorf("inserted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"api.example.com"}, tp.store.Names("weather", a("198.18.1.2"))); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if got := tp.store.Names("news", a("198.18.1.2")); got != nil {
		t.Errorf("news learned weather's address: %v", got)
	}
	// A TXT answer for an allowed name teaches nothing.
	n := len(tp.ins.all())
	if _, v := tp.ask(t, "weather", "api.example.com", dns.TypeTXT, false); v != Allowed || len(tp.ins.all()) != n {
		t.Errorf("TXT: verdict %v, inserted %d new", v, len(tp.ins.all())-n)
	}
	// The wildcard: any port.
	tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
	got := tp.ins.all()
	if last := got[len(got)-1]; last.Addr != a("198.18.2.1") || last.Port != 0 || last.Proto != 0 {
		t.Errorf("wildcard element = %+v, want 198.18.2.1 any port", last)
	}
}

// approxTimeout treats timeouts within a second as equal: the store's clock
// runs while the test does.
var approxTimeout = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().String() == ".Timeout"
}, cmp.Comparer(func(x, y time.Duration) bool { d := x - y; return d > -time.Second && d < time.Second }))

func TestUpstreamQueryShape(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, nil)
	// Upstream sockets are pooled (see upstream.go): a port serves at most
	// maxSocketUses queries.
	n := 3 * maxSocketUses
	for range n {
		tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
	}
	seen := up.seen()
	if len(seen) != n {
		t.Fatalf("upstream saw %d queries, want %d", len(seen), n)
	}
	ids, ports := map[uint16]bool{}, map[uint16]int{}
	for _, q := range seen {
		if !q.EDNS || q.TCP {
			t.Errorf("upstream query %+v: want EDNS0 over UDP", q)
		}
		ids[q.ID] = true
		ports[q.Port]++
	}
	// Random 16-bit values collide rarely; half distinct is a floor that a
	// fixed or counting ID would never reach.
	if len(ids) < n/2 || len(ports) < 3 {
		t.Errorf("%d distinct IDs and %d distinct source ports in %d queries; want random IDs and a new port every %d queries", len(ids), len(ports), n, maxSocketUses)
	}
	for p, c := range ports {
		if c > maxSocketUses {
			t.Errorf("source port %d served %d queries, want at most %d", p, c, maxSocketUses)
		}
	}
}

func TestTruncation(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	p := testPolicy(t, []netip.AddrPort{up.addr})
	tp := newTestProxy(t, p, nil, nil)

	// The upstream truncates at our 1232 bytes: 60 A records (~1000 bytes)
	// fit; force truncation with a small buffer instead.
	up2 := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if r.IsEdns0() != nil {
			r.IsEdns0().SetUDPSize(512)
		}
		labZone.handler(t)(w, r)
	})
	tp2 := newTestProxy(t, testPolicy(t, []netip.AddrPort{up2.addr}), nil, nil)
	resp, v := tp2.ask(t, "weather", "big.cdn.example", dns.TypeA, true)
	if v != Allowed || len(resp.Answer) != 60 || resp.Truncated {
		t.Fatalf("verdict %v, %d records, TC %v; want all 60 via TCP", v, len(resp.Answer), resp.Truncated)
	}
	var tcp int
	for _, q := range up2.seen() {
		if q.TCP {
			tcp++
		}
	}
	if tcp != 1 {
		t.Errorf("upstream saw %d TCP queries, want 1 retry over TCP", tcp)
	}
	if n := len(tp2.ins.all()); n != 60 {
		t.Errorf("inserted %d elements, want 60", n)
	}
	_ = tp
}

func TestStubsOverTheNetwork(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	wport, nport := freePort(t), freePort(t)
	for wport == nport {
		nport = freePort(t)
	}
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}, wport, nport), nil, nil)
	if err := tp.Start(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", wport), fmt.Sprintf("[::1]:%d", wport)} {
		for _, proto := range []string{"udp", "tcp"} {
			resp := exchange(t, addr, proto, "x.cdn.example", dns.TypeA, false)
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Errorf("%s %s: %v", proto, addr, resp)
			}
			resp = exchange(t, addr, proto, "evil.example.com", dns.TypeA, true)
			if resp.Rcode != dns.RcodeNameError || edeOf(resp) == nil {
				t.Errorf("%s %s blocked name: %v", proto, addr, resp)
			}
		}
	}
	// A UDP client without EDNS0 gets a truncated answer and the whole
	// one over TCP; the upstream is asked over TCP for the TCP query.
	addr := fmt.Sprintf("127.0.0.1:%d", wport)
	resp := exchange(t, addr, "udp", "big.cdn.example", dns.TypeA, false)
	if !resp.Truncated || len(resp.Answer) >= 60 {
		t.Errorf("UDP without EDNS0: TC %v with %d records, want truncated", resp.Truncated, len(resp.Answer))
	}
	resp = exchange(t, addr, "tcp", "big.cdn.example", dns.TypeA, false)
	if resp.Truncated || len(resp.Answer) != 60 {
		t.Errorf("TCP: TC %v with %d records, want all 60", resp.Truncated, len(resp.Answer))
	}
	if q := up.seen(); !q[len(q)-1].TCP {
		t.Errorf("TCP query went upstream over UDP: %+v", q[len(q)-1])
	}
	// news has its own stub and its own policy.
	resp = exchange(t, fmt.Sprintf("127.0.0.1:%d", nport), "udp", "x.cdn.example", dns.TypeA, false)
	if resp.Rcode != dns.RcodeNameError {
		t.Errorf("news stub answered weather's name: %v", resp)
	}
	if diff := cmp.Diff(map[string]uint16{"weather": wport, "news": nport}, tp.Ports()); diff != "" {
		t.Errorf("Ports (-want +got):\n%s", diff)
	}
}

func TestUpstreamFailover(t *testing.T) {
	var answered sync.Map
	servfail := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	silent := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {})
	// liar answers with the wrong ID, then the wrong question, then (UDP
	// only) the right answer, which must be the one taken.
	liar := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		good := new(dns.Msg)
		good.SetReply(r)
		good.Answer = append(good.Answer, mustRR(t, r.Question[0].Name+" 60 IN A 198.18.2.1"))
		bad := good.Copy()
		bad.Id++
		w.WriteMsg(bad)
		other := good.Copy()
		other.Question[0].Name = "evil.example.com."
		w.WriteMsg(other)
		notResp := good.Copy()
		notResp.Response = false
		w.WriteMsg(notResp)
		w.WriteMsg(good)
		answered.Store(r.Id, true)
	})
	good := startUpstream(t, labZone.handler(t))

	tests := []struct {
		name   string
		ups    []*testUpstream
		rcode  int
		errors map[netip.AddrPort]uint64
	}{
		{"servfail then good", []*testUpstream{servfail, good}, dns.RcodeSuccess, map[netip.AddrPort]uint64{servfail.addr: 1}},
		{"timeout then good", []*testUpstream{silent, good}, dns.RcodeSuccess, map[netip.AddrPort]uint64{silent.addr: 1}},
		{"liar", []*testUpstream{liar}, dns.RcodeSuccess, map[netip.AddrPort]uint64{}},
		{"all servfail", []*testUpstream{servfail}, dns.RcodeServerFailure, map[netip.AddrPort]uint64{servfail.addr: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []netip.AddrPort
			for _, u := range tt.ups {
				addrs = append(addrs, u.addr)
			}
			tp := newTestProxy(t, testPolicy(t, addrs), nil, nil)
			resp, _ := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.rcode == dns.RcodeSuccess && (len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "198.18.2.1") {
				t.Errorf("answer %v", resp.Answer)
			}
			got := map[netip.AddrPort]uint64{}
			for _, us := range tp.Stats().Upstreams {
				if us.Errors > 0 {
					got[us.Addr] = us.Errors
				}
			}
			if diff := cmp.Diff(tt.errors, got, eqAddr); diff != "" {
				t.Errorf("upstream errors (-want +got):\n%s", diff)
			}
			// Failover sticks: the next query starts with the upstream that answered.
			if len(tt.ups) > 1 && tt.rcode == dns.RcodeSuccess {
				before := len(tt.ups[0].seen())
				tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
				if after := len(tt.ups[0].seen()); after != before {
					t.Errorf("second query asked the failed upstream again")
				}
			}
		})
	}

	t.Run("none answers", func(t *testing.T) {
		tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{silent.addr}), nil, nil)
		resp, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, true)
		if v != UpstreamError || resp.Rcode != dns.RcodeServerFailure {
			t.Fatalf("verdict %v rcode %s, want upstream_error SERVFAIL", v, dns.RcodeToString[resp.Rcode])
		}
		if ede := edeOf(resp); ede == nil || ede.InfoCode != dns.ExtendedErrorCodeNetworkError {
			t.Errorf("EDE = %+v, want Network Error", ede)
		}
		if _, err := tp.Resolve(context.Background(), policy.SystemName, "time.example.com", dns.TypeA); !errors.Is(err, ErrUpstream) {
			t.Errorf("Resolve error = %v, want ErrUpstream", err)
		}
	})
	t.Run("no upstreams", func(t *testing.T) {
		tp := newTestProxy(t, testPolicy(t, nil), nil, nil)
		// Not an upstream failure: there is nobody to ask (TestNoUpstreams).
		if _, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false); v != NoUpstream {
			t.Errorf("verdict %v, want no_upstream", v)
		}
	})
}

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func TestRebinding(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, nil)

	resp, v := tp.ask(t, "weather", "rebind.cdn.example", dns.TypeA, true)
	if v != Rebinding || resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
		t.Fatalf("verdict %v rcode %s answers %d; want rebinding SERVFAIL with no records", v, dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	if ede := edeOf(resp); ede == nil || ede.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(ede.ExtraText, "10.1.2.3") {
		t.Errorf("EDE = %+v, want Blocked naming 10.1.2.3", ede)
	}
	if got := tp.store.Names("weather", a("198.18.2.9")); got != nil {
		t.Errorf("public address of a refused answer was learned: %v", got)
	}
	// Exempt by config (lab.example.com) and by being a LAN name (.lan).
	for _, name := range []string{"lab.example.com", "printer.lan"} {
		if resp, v := tp.ask(t, "weather", name, dns.TypeA, false); v != Allowed || len(resp.Answer) != 1 {
			t.Errorf("%s: verdict %v, %d records; want allowed", name, v, len(resp.Answer))
		}
	}
	if got := tp.store.Names("weather", a("192.168.7.7")); len(got) != 1 {
		t.Errorf("exempt private address not learned: %v", got)
	}
}

func TestAddrClass(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want string
	}{
		{"198.18.0.1", ""}, {"2001:db8::1", ""}, {"8.8.8.8", ""},
		{"10.0.0.1", "private"}, {"172.16.5.4", "private"}, {"192.168.1.1", "private"}, {"fd00::1", "private"}, {"fec0::1", "private"},
		{"127.0.0.1", "loopback"}, {"::1", "loopback"}, {"::ffff:127.0.0.1", "loopback"},
		{"169.254.1.1", "link-local"}, {"fe80::1", "link-local"},
		{"0.0.0.0", "unspecified"}, {"::", "unspecified"}, {"0.1.2.3", "unspecified"},
		{"100.64.0.1", "shared (CGNAT)"}, {"224.0.0.1", "multicast or broadcast"}, {"255.255.255.255", "multicast or broadcast"},
		{"64:ff9b::10.0.0.1", "private"}, {"64:ff9b::8.8.8.8", ""},
	} {
		if got := addrClass(a(tt.addr)); got != tt.want {
			t.Errorf("addrClass(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	for name, want := range map[string]bool{"example.com": true, "printer": false, "x.local": false, "nas.home.arpa": false, "a.lan": false, "localhost": false, "lan.example.com": true} {
		if got := isPublicName(name); got != want {
			t.Errorf("isPublicName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestDNSSD(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, nil)

	// printer.example.com is not in the manifest: blocked until a DNS-SD answer names it.
	if _, v := tp.ask(t, "weather", "printer.example.com", dns.TypeA, false); v != Blocked {
		t.Fatalf("printer before browsing: verdict %v, want blocked", v)
	}
	resp, v := tp.ask(t, "weather", "_ipp._tcp.example.com", dns.TypePTR, false)
	if v != Allowed || len(resp.Answer) != 1 {
		t.Fatalf("PTR: verdict %v, %v", v, resp)
	}
	via, ok := tp.store.Granted("weather", "printer.example.com")
	if !ok || via != "_ipp._tcp.example.com" {
		t.Errorf("Granted = %q, %v", via, ok)
	}
	if got := tp.store.Names("weather", a("198.18.4.4")); len(got) != 1 {
		t.Errorf("SRV target address from the additional section not learned: %v", got)
	}
	// The instance's SRV query and the target's A query now pass.
	if resp, v := tp.ask(t, "weather", `Office\ Printer._ipp._tcp.example.com`, dns.TypeSRV, false); v != Allowed || len(resp.Answer) != 1 {
		t.Errorf("SRV: verdict %v, %v", v, resp)
	}
	if resp, v := tp.ask(t, "weather", "printer.example.com", dns.TypeA, false); v != Allowed || len(resp.Answer) != 1 {
		t.Errorf("A of the SRV target: verdict %v, %v", v, resp)
	}
	// Other apps gain nothing.
	if _, v := tp.ask(t, "news", "printer.example.com", dns.TypeA, false); v != Blocked {
		t.Errorf("news resolving the printer: verdict %v, want blocked", v)
	}
}

func TestResolveSystem(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, nil)
	ctx := context.Background()
	addrs, err := tp.LookupNetIP(ctx, policy.SystemName, "time.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{a("198.18.5.5")}, addrs, eqAddr); diff != "" {
		t.Errorf("LookupNetIP (-want +got):\n%s", diff)
	}
	want := []learned.Element{{App: "system", Addr: a("198.18.5.5"), Proto: policy.UDP, Port: 123, Timeout: 61 * time.Second}}
	if diff := cmp.Diff(want, tp.ins.all(), eqAddr, approxTimeout); diff != "" {
		t.Errorf("inserted (-want +got):\n%s", diff)
	}
	if _, err := tp.Resolve(ctx, policy.SystemName, "api.example.com", dns.TypeA); !errors.Is(err, ErrBlocked) {
		t.Errorf("Resolve(not allowed) error = %v, want ErrBlocked", err)
	}
	if _, err := tp.Resolve(ctx, "weather", "nothing.cdn.example", dns.TypeA); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(NXDOMAIN) error = %v, want ErrNotFound", err)
	}
	if _, err := tp.Resolve(ctx, "nobody", "x.cdn.example", dns.TypeA); err == nil {
		t.Error("Resolve for an unknown app succeeded")
	}
}

// The answer waits for the kernel's acknowledgement; concurrent answers
// share one transaction.
func TestInsertBeforeAnswerAndGroupCommit(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	ins := &fakeInserter{hold: make(chan struct{}), entered: make(chan int, 100)}
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), ins, nil)
	// Runs before Close: lets any transaction still held finish.
	t.Cleanup(func() { close(ins.hold) })

	done := make(chan Verdict, 20)
	go func() {
		_, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
		done <- v
	}()
	if n := <-ins.entered; n != 1 {
		t.Fatalf("first batch has %d elements, want 1", n)
	}
	// While the first transaction is in flight, 10 more answers queue up.
	for i := range 10 {
		go func() {
			name := []string{"api.example.com", "news.example.com"}[i%2]
			app := []string{"weather", "news"}[i%2]
			_, v := tp.ask(t, app, name, dns.TypeA, false)
			done <- v
		}()
	}
	select {
	case v := <-done:
		t.Fatalf("an answer (verdict %v) went out before the kernel acknowledged", v)
	default:
	}
	// Wait until all ten are queued: the committer's pending count says so.
	deadline := time.Now().Add(5 * time.Second)
	for {
		tp.commit.mu.Lock()
		n := tp.commit.pending
		tp.commit.mu.Unlock()
		if n == 15 { // 2 addresses x 5 for api.example.com, 1 x 5 for news
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d elements queued", n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	ins.hold <- struct{}{}
	if v := <-done; v != Allowed {
		t.Fatalf("verdict %v", v)
	}
	// The queue, deduplicated, goes as one batch.
	if n := <-ins.entered; n != 3 {
		t.Errorf("second batch has %d elements, want 3", n)
	}
	ins.hold <- struct{}{}
	for range 10 {
		if v := <-done; v != Allowed {
			t.Errorf("verdict %v", v)
		}
	}
	if n := ins.numBatches(); n != 2 {
		t.Errorf("%d transactions, want 2", n)
	}
	if st := tp.Stats(); st.Insert.Hold.Count != 11 || st.Insert.Timeouts != 0 || st.Insert.Batches != 2 {
		t.Errorf("insert stats = %+v", st.Insert)
	}
}

func TestInsertTimeout(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	ins := &fakeInserter{hold: make(chan struct{})}
	p := testPolicy(t, []netip.AddrPort{up.addr})
	p.DNS.InsertTimeout = 20 * time.Millisecond
	tp := newTestProxy(t, p, ins, nil)
	resp, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
	if v != Allowed || len(resp.Answer) != 1 {
		t.Fatalf("verdict %v, %v", v, resp)
	}
	if st := tp.Stats(); st.Insert.Timeouts != 1 || st.Insert.Hold.Count != 1 || st.Insert.Hold.Max < 20*time.Millisecond {
		t.Errorf("insert stats = %+v, want one timeout after >= 20ms", st.Insert)
	}
	close(ins.hold) // the late transaction completes; Close waits for it
}

func TestInsertErrorIsolatesApps(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	ins := &fakeInserter{fail: "news"}
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), ins, nil)
	b, err := tp.commit.submit([]learned.Element{{App: "weather", Addr: a("198.18.0.1"), Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tp.commit.submit([]learned.Element{{App: "news", Addr: a("198.18.0.2"), Timeout: time.Second}})
	<-b.done
	time.Sleep(0)
	deadline := time.Now().Add(5 * time.Second)
	for len(ins.all()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	got := ins.all()
	if len(got) != 1 || got[0].App != "weather" {
		t.Errorf("inserted %+v, want weather's element only", got)
	}
}

func TestRateLimit(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	p := testPolicy(t, []netip.AddrPort{up.addr})
	p.DNS.RateLimit, p.DNS.Burst = 0.001, 3
	tp := newTestProxy(t, p, nil, nil)
	var verdicts []Verdict
	for range 5 {
		_, v := tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
		verdicts = append(verdicts, v)
	}
	if diff := cmp.Diff([]Verdict{Allowed, Allowed, Allowed, RateLimited, RateLimited}, verdicts); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	// news has its own bucket.
	if _, v := tp.ask(t, "news", "news.example.com", dns.TypeA, false); v != Allowed {
		t.Errorf("news verdict %v, want allowed", v)
	}
}

// A flood from one app, whose upstream answers hang, must not slow the
// others: its queries beyond the in-flight cap fail at once, and another
// app's queries are answered while the flood goes on.
func TestFloodIsolation(t *testing.T) {
	// weather's names hang until the test ends. The proxy may still retry
	// one after the flood stopped, so hung handlers are not counted: they
	// return once release is closed, and the upstream's cleanup waits.
	release := make(chan struct{})
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if strings.HasSuffix(r.Question[0].Name, ".cdn.example.") {
			<-release
		}
		labZone.handler(t)(w, r)
	})
	var once sync.Once
	unhang := func() { once.Do(func() { close(release) }) }
	defer unhang()
	p := testPolicy(t, []netip.AddrPort{up.addr})
	p.DNS.QueryTimeout = 10 * time.Second
	p.DNS.MaxInFlight = 8
	p.DNS.RateLimit, p.DNS.Burst = 1e6, 1e6
	tp := newTestProxy(t, p, nil, nil)

	ctx, cancel := context.WithCancel(context.Background())
	var flood sync.WaitGroup
	for i := range 16 {
		flood.Go(func() {
			for j := 0; ctx.Err() == nil; j++ {
				tp.ask(t, "weather", fmt.Sprintf("f%d-%d.cdn.example", i, j), dns.TypeA, false)
			}
		})
	}
	// Wait until the flood fills weather's in-flight cap.
	deadline := time.Now().Add(5 * time.Second)
	for len(*tp.runtimes["weather"].sem.Load()) < 8 {
		if time.Now().After(deadline) {
			t.Fatal("flood did not fill the in-flight cap")
		}
		time.Sleep(time.Millisecond)
	}
	for range 50 {
		resp, v := tp.ask(t, "news", "news.example.com", dns.TypeA, false)
		if v != Allowed || len(resp.Answer) != 1 {
			t.Fatalf("news during the flood: verdict %v, %v", v, resp)
		}
	}
	cancel()
	var limited uint64
	for _, as := range tp.Stats().Apps {
		if as.App == "weather" {
			limited = as.Queries["ratelimited"]
		}
	}
	if limited == 0 {
		t.Error("no weather query was refused by the in-flight cap")
	}
	unhang()
	flood.Wait()
}

func TestUpdate(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	wport, nport := freePort(t), freePort(t)
	p1 := testPolicy(t, []netip.AddrPort{up.addr}, wport, 0)
	tp := newTestProxy(t, p1, nil, nil)
	if err := tp.Start(); err != nil {
		t.Fatal(err)
	}
	waddr := fmt.Sprintf("127.0.0.1:%d", wport)
	exchange(t, waddr, "udp", "news.example.com", dns.TypeA, false)
	tp.ask(t, "weather", "api.example.com", dns.TypeA, false)

	// New policy: news gets a stub, weather moves and loses api.example.com.
	wport2 := freePort(t)
	p2 := testPolicy(t, []netip.AddrPort{up.addr}, wport2, nport)
	p2.Apps[0].Hosts = p2.Apps[0].Hosts[1:]
	p2 = policy.Finish(p2)
	if err := tp.Update(p2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]uint16{"weather": wport2, "news": nport}, tp.Ports()); diff != "" {
		t.Errorf("Ports after Update (-want +got):\n%s", diff)
	}
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	if _, _, err := c.Exchange(new(dns.Msg).SetQuestion("x.cdn.example.", dns.TypeA), waddr); err == nil {
		t.Error("old weather port still answers")
	}
	if resp := exchange(t, fmt.Sprintf("[::1]:%d", wport2), "tcp", "api.example.com", dns.TypeA, false); resp.Rcode != dns.RcodeNameError {
		t.Errorf("removed name after Update: %v", resp)
	}
	if resp := exchange(t, fmt.Sprintf("127.0.0.1:%d", nport), "udp", "news.example.com", dns.TypeA, false); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("news stub: %v", resp)
	}
	if got := tp.store.Names("weather", a("198.18.1.1")); got != nil {
		t.Errorf("learned entries of the removed name survive Update: %v", got)
	}
}

func TestMetrics(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	reg := prometheus.NewPedanticRegistry()
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, func(o *Options) { o.Registerer = reg })
	tp.ask(t, "weather", "x.cdn.example", dns.TypeA, false)
	tp.ask(t, "weather", "evil.example", dns.TypeA, false)
	want := `
# HELP pinhole_dns_queries_total DNS queries answered by the stubs, by app and verdict.
# TYPE pinhole_dns_queries_total counter
`
	var lines []string
	for _, app := range []string{"news", "system", "weather"} {
		for v := range numVerdicts {
			n := 0
			if app == "weather" && (v == Allowed || v == Blocked) {
				n = 1
			}
			lines = append(lines, fmt.Sprintf("pinhole_dns_queries_total{app=%q,verdict=%q} %d", app, v, n))
		}
	}
	slices.Sort(lines)
	want += strings.Join(lines, "\n") + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pinhole_dns_queries_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n < 20 {
		t.Errorf("GatherAndCount = %d, %v", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP pinhole_learned_entries Learned name/address entries per app.
# TYPE pinhole_learned_entries gauge
pinhole_learned_entries{app="weather"} 1
`), "pinhole_learned_entries"); err != nil {
		t.Error(err)
	}
}
