package dnsproxy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/logprefix"
	"github.com/pinhole-net/pinhole/internal/policy"
)

type fakeAuditor struct {
	mu   sync.Mutex
	recs []audit.DNSQuery
}

func (f *fakeAuditor) RecordDNS(q audit.DNSQuery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recs = append(f.recs, q)
}

func (f *fakeAuditor) all() []audit.DNSQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]audit.DNSQuery(nil), f.recs...)
}

// TestAuditMode: in audit mode a name the app may not resolve, and an
// answer rebinding protection would refuse, are answered but open nothing
// and are recorded; allowed names are learned as in enforce mode, and
// enforce mode still blocks.
func TestAuditMode(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	tests := []struct {
		mode     policy.Mode
		name     string
		want     Verdict
		rcode    int
		answers  int
		inserted bool
		record   *audit.DNSQuery
	}{
		{mode: policy.ModeAudit, name: "news.example.com", want: Audit, rcode: dns.RcodeSuccess, answers: 1,
			record: &audit.DNSQuery{App: "weather", Name: "news.example.com", Type: "A", Addrs: []netip.Addr{a("198.18.3.1")},
				Reason: "would be blocked: not in the app's AllowedConnections"}},
		{mode: policy.ModeAudit, name: "nonesuch.example", want: Audit, rcode: dns.RcodeNameError,
			record: &audit.DNSQuery{App: "weather", Name: "nonesuch.example", Type: "A",
				Reason: "would be blocked: not in the app's AllowedConnections (answer: NXDOMAIN)"}},
		{mode: policy.ModeAudit, name: "rebind.cdn.example", want: Audit, rcode: dns.RcodeSuccess, answers: 2,
			record: &audit.DNSQuery{App: "weather", Name: "rebind.cdn.example", Type: "A", Addrs: []netip.Addr{a("198.18.2.9"), a("10.1.2.3")},
				Reason: "would be refused by rebinding protection: rebind.cdn.example answered 10.1.2.3, a private address (allow it with dns.allow_private)"}},
		{mode: policy.ModeAudit, name: "x.cdn.example", want: Allowed, rcode: dns.RcodeSuccess, answers: 1, inserted: true},
		{mode: policy.ModeEnforce, name: "news.example.com", want: Blocked, rcode: dns.RcodeNameError,
			record: &audit.DNSQuery{Verdict: logprefix.Deny, App: "weather", Name: "news.example.com", Type: "A",
				Reason: "blocked: not in the app's AllowedConnections (answered NXDOMAIN)"}},
		{mode: policy.ModeEnforce, name: "rebind.cdn.example", want: Rebinding, rcode: dns.RcodeServerFailure,
			record: &audit.DNSQuery{Verdict: logprefix.Deny, App: "weather", Name: "rebind.cdn.example", Type: "A",
				Reason: "refused by rebinding protection: rebind.cdn.example answered 10.1.2.3, a private address (answered SERVFAIL; allow it with dns.allow_private)"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+" "+tt.name, func(t *testing.T) {
			p := testPolicy(t, []netip.AddrPort{up.addr})
			p.Mode = tt.mode
			aud := &fakeAuditor{}
			tp := newTestProxy(t, policy.Finish(p), nil, func(o *Options) { o.Audit = aud })
			resp, v := tp.ask(t, "weather", tt.name, dns.TypeA, false)
			if v != tt.want || resp.Rcode != tt.rcode || len(resp.Answer) != tt.answers {
				t.Fatalf("verdict %v rcode %s answers %d, want %v %s %d", v, dns.RcodeToString[resp.Rcode], len(resp.Answer), tt.want, dns.RcodeToString[tt.rcode], tt.answers)
			}
			if got := len(tp.ins.all()) > 0; got != tt.inserted {
				t.Errorf("inserted %v, want %v", tp.ins.all(), tt.inserted)
			}
			if got := len(tp.store.Snapshot("weather")) > 0; got != tt.inserted {
				t.Errorf("learned %v, want learned: %v", tp.store.Snapshot("weather"), tt.inserted)
			}
			var want []audit.DNSQuery
			if tt.record != nil {
				want = []audit.DNSQuery{*tt.record}
			}
			got := aud.all()
			for i := range got {
				got[i].TTL = 0
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("audit records (-want +got):\n%s", diff)
			}
			for _, as := range tp.Stats().Apps {
				if as.App == "weather" && as.Queries[tt.want.String()] != 1 {
					t.Errorf("weather's %s queries = %d, want 1", tt.want, as.Queries[tt.want.String()])
				}
			}
		})
	}
}

// TestRefusedRecordsBounded: an app asking for many names it may not
// resolve gets NXDOMAIN for each, but only a burst of them reaches the audit
// log.
func TestRefusedRecordsBounded(t *testing.T) {
	up := startUpstream(t, labZone.handler(t))
	aud := &fakeAuditor{}
	tp := newTestProxy(t, testPolicy(t, []netip.AddrPort{up.addr}), nil, func(o *Options) { o.Audit = aud })
	const n = 200
	for i := range n {
		if _, v := tp.ask(t, "weather", fmt.Sprintf("r%d.nonesuch.example", i), dns.TypeA, false); v != Blocked {
			t.Fatalf("query %d: verdict %v, want blocked", i, v)
		}
	}
	// 50 at once, then 10 a second: the loop takes well under the 15 s it
	// would need to earn 150 more.
	if got := len(aud.all()); got < 50 || got >= n {
		t.Errorf("%d of %d refused lookups recorded, want the burst of 50 and not all", got, n)
	}
}
