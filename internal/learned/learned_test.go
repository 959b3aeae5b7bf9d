package learned

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

var eqAddr = cmpopts.EquateComparable(netip.Addr{})

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pat(t testing.TB, s string) hostname.Pattern {
	t.Helper()
	p, err := hostname.ParsePattern(s)
	if err != nil {
		t.Fatalf("ParsePattern(%q): %v", s, err)
	}
	return p
}

func host(t testing.TB, s string, ports policy.Ports) policy.HostRule {
	return policy.HostRule{Pattern: pat(t, s), Ports: ports}
}

var (
	tcp443 = policy.Ports{{Proto: policy.TCP, Port: 443}}
	tcp80  = policy.Ports{{Proto: policy.TCP, Port: 80}}
)

// testPolicy: weather may reach api.example.com on tcp/443, *.cdn.example
// on any port and the _ipp._tcp.example.com service; news reaches
// news.example.com on tcp/80 and tcp/443.
func testPolicy(t testing.TB) *policy.Policy {
	return policy.Finish(&policy.Policy{
		Apps: []*policy.App{
			{Name: "weather", Hosts: []policy.HostRule{
				host(t, "api.example.com", tcp443),
				host(t, "*.cdn.example", nil),
				host(t, "_ipp._tcp.example.com", nil),
			}},
			{Name: "news", Hosts: []policy.HostRule{
				host(t, "news.example.com", tcp80.Union(tcp443)),
			}},
		},
		System: &policy.App{Name: policy.SystemName, Hosts: []policy.HostRule{host(t, "time.example.com", policy.Ports{{Proto: policy.UDP, Port: 123}})}},
	})
}

var lim = Limits{TTLFloor: 5 * time.Second, TTLCeiling: time.Hour, Grace: 10 * time.Second}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLifetime(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		ttl  time.Duration
		want time.Duration
	}{
		{"within", lim, time.Minute, time.Minute + 10*time.Second},
		{"floor", lim, time.Second, 15 * time.Second},
		{"ceiling", lim, 48 * time.Hour, time.Hour + 10*time.Second},
		{"ttl zero, no floor or grace", Limits{}, 0, MinTimeout},
		{"no ceiling", Limits{Grace: time.Second}, 48 * time.Hour, 48*time.Hour + time.Second},
		{"issue example", Limits{TTLFloor: time.Second, Grace: time.Second}, 2 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.lim.Lifetime(tt.ttl); got != tt.want {
				t.Errorf("Lifetime(%v) = %v, want %v", tt.ttl, got, tt.want)
			}
		})
	}
}

func TestLearnElements(t *testing.T) {
	clk := newClock()
	s := New(Options{Limits: lim, Clock: clk})

	got := s.Learn(Learning{App: "weather", Name: "api.example.com", Ports: tcp443, Addrs: []AddrTTL{
		{a("198.18.0.1"), time.Minute}, {a("2001:db8::1"), 30 * time.Second}, {a("::ffff:198.18.0.2"), time.Second},
	}})
	want := []Element{
		{App: "weather", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 443, Timeout: 70 * time.Second},
		{App: "weather", Addr: a("2001:db8::1"), Proto: policy.TCP, Port: 443, Timeout: 40 * time.Second},
		{App: "weather", Addr: a("198.18.0.2"), Proto: policy.TCP, Port: 443, Timeout: 15 * time.Second},
	}
	if diff := cmp.Diff(want, got, eqAddr); diff != "" {
		t.Fatalf("Learn elements (-want +got):\n%s", diff)
	}

	// Another name of the same app shares 198.18.0.1 with a shorter TTL: the
	// element keeps the longer lifetime, and the any-port name gets its own.
	got = s.Learn(Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.1"), 20 * time.Second}}})
	want = []Element{{App: "weather", Addr: a("198.18.0.1"), Timeout: 30 * time.Second}}
	if diff := cmp.Diff(want, got, eqAddr); diff != "" {
		t.Fatalf("Learn any-port elements (-want +got):\n%s", diff)
	}
	got = s.Learn(Learning{App: "weather", Name: "www.example.com", Via: "api.example.com", Ports: tcp443, Addrs: []AddrTTL{{a("198.18.0.1"), 20 * time.Second}}})
	want = []Element{{App: "weather", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 443, Timeout: 70 * time.Second}}
	if diff := cmp.Diff(want, got, eqAddr); diff != "" {
		t.Fatalf("Learn shared-key elements (-want +got):\n%s", diff)
	}

	// Another app learning the same address gets its own element.
	got = s.Learn(Learning{App: "news", Name: "news.example.com", Ports: tcp80.Union(tcp443), Addrs: []AddrTTL{{a("198.18.0.1"), time.Minute}}})
	want = []Element{
		{App: "news", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 80, Timeout: 70 * time.Second},
		{App: "news", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 443, Timeout: 70 * time.Second},
	}
	if diff := cmp.Diff(want, got, eqAddr); diff != "" {
		t.Fatalf("Learn other app (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff([]string{"a.cdn.example", "api.example.com", "www.example.com"}, s.Names("weather", a("198.18.0.1")), eqAddr); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if got := s.Names("weather", a("198.18.9.9")); got != nil {
		t.Errorf("Names(unknown address) = %v, want nil", got)
	}
	if got := s.Names("nobody", a("198.18.0.1")); got != nil {
		t.Errorf("Names(unknown app) = %v, want nil", got)
	}
}

func TestAcknowledgeSkipsNeedlessRefresh(t *testing.T) {
	clk := newClock()
	s := New(Options{Limits: lim, Clock: clk})
	l := Learning{App: "weather", Name: "api.example.com", Ports: tcp443, Addrs: []AddrTTL{{a("198.18.0.1"), 80 * time.Second}}}

	els := s.Learn(l)
	if len(els) != 1 {
		t.Fatalf("first Learn = %v, want one element", els)
	}
	// Not acknowledged yet: the same answer asks for the insert again.
	if els := s.Learn(l); len(els) != 1 {
		t.Fatalf("Learn before Acknowledge = %v, want one element", els)
	}
	s.Acknowledge(els, clk.Now())
	if els := s.Learn(l); len(els) != 0 {
		t.Fatalf("Learn right after Acknowledge = %v, want none", els)
	}
	// A little later the kernel's expiry is within the slack (1/8 of 90s).
	clk.Advance(5 * time.Second)
	if els := s.Learn(l); len(els) != 0 {
		t.Fatalf("Learn 5s later = %v, want none", els)
	}
	clk.Advance(10 * time.Second)
	els = s.Learn(l)
	want := []Element{{App: "weather", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 443, Timeout: 90 * time.Second}}
	if diff := cmp.Diff(want, els, eqAddr); diff != "" {
		t.Fatalf("Learn 15s later (-want +got):\n%s", diff)
	}
	s.Forget()
	if els := s.Learn(l); len(els) != 1 {
		t.Fatalf("Learn after Forget = %v, want one element", els)
	}
}

func TestCaps(t *testing.T) {
	clk := newClock()
	s := New(Options{Limits: Limits{MaxPerApp: 4, MaxPerName: 2}, Clock: clk})
	learn := func(name, addr string, ttl time.Duration) {
		s.Learn(Learning{App: "weather", Name: name, Addrs: []AddrTTL{{a(addr), ttl}}})
	}
	learn("a.cdn.example", "198.18.0.1", 10*time.Second)
	learn("a.cdn.example", "198.18.0.2", 20*time.Second)
	learn("a.cdn.example", "198.18.0.3", 30*time.Second) // evicts .1 (per name)
	learn("b.cdn.example", "198.18.0.4", 5*time.Second)
	learn("c.cdn.example", "198.18.0.5", 50*time.Second)
	learn("d.cdn.example", "198.18.0.6", 60*time.Second) // evicts .4 (per app)
	learn("d.cdn.example", "198.18.0.7", 70*time.Second) // evicts .2 (per app)

	type nameAddrs struct {
		Name  string
		Addrs []netip.Addr
	}
	var got []nameAddrs
	for _, ne := range s.Snapshot("weather") {
		na := nameAddrs{Name: ne.Name}
		for _, ae := range ne.Addrs {
			na.Addrs = append(na.Addrs, ae.Addr)
		}
		got = append(got, na)
	}
	want := []nameAddrs{
		{"a.cdn.example", []netip.Addr{a("198.18.0.3")}},
		{"c.cdn.example", []netip.Addr{a("198.18.0.5")}},
		{"d.cdn.example", []netip.Addr{a("198.18.0.6"), a("198.18.0.7")}},
	}
	if diff := cmp.Diff(want, got, eqAddr); diff != "" {
		t.Errorf("Snapshot after caps (-want +got):\n%s", diff)
	}
	wantStats := []AppStats{{App: "weather", Entries: 4, Addresses: 4, Names: 3, EvictedPerApp: 2, EvictedPerName: 1}}
	if diff := cmp.Diff(wantStats, s.Stats(), eqAddr); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// An app at its cap that learns for a name whose only entry is the oldest
// must keep the name linked.
func TestCapEvictsOwnName(t *testing.T) {
	s := New(Options{Limits: Limits{MaxPerApp: 1, MaxPerName: 1}, Clock: newClock()})
	for i := range 5 {
		s.Learn(Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), time.Duration(i+1) * time.Second}}})
	}
	snap := s.Snapshot("weather")
	if len(snap) != 1 || len(snap[0].Addrs) != 1 || snap[0].Addrs[0].Addr != a("198.18.0.4") {
		t.Fatalf("Snapshot = %+v, want a.cdn.example with 198.18.0.4 only", snap)
	}
}

func TestExpiry(t *testing.T) {
	clk := newClock()
	s := New(Options{Limits: Limits{TTLFloor: time.Second, Grace: time.Second}, Clock: clk})
	s.Learn(Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.1"), 2 * time.Second}, {a("198.18.0.2"), 10 * time.Second}}})

	clk.Advance(2999 * time.Millisecond)
	if got := s.Names("weather", a("198.18.0.1")); len(got) != 1 {
		t.Fatalf("Names just before expiry = %v, want one name", got)
	}
	clk.Advance(time.Millisecond)
	if got := s.Names("weather", a("198.18.0.1")); got != nil {
		t.Fatalf("Names at expiry = %v, want none", got)
	}
	if n := s.Sweep(); n != 1 {
		t.Errorf("Sweep() = %d, want 1", n)
	}
	// A repeated answer refreshes.
	clk.Advance(5 * time.Second)
	s.Learn(Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.2"), 10 * time.Second}}})
	clk.Advance(10 * time.Second)
	if got := s.Names("weather", a("198.18.0.2")); len(got) != 1 {
		t.Fatalf("Names after refresh = %v, want one name", got)
	}
	clk.Advance(time.Second)
	if n := s.Sweep(); n != 1 {
		t.Errorf("Sweep() = %d, want 1", n)
	}
	if got := s.Stats(); len(got) != 0 {
		t.Errorf("Stats after all expired = %+v, want none", got)
	}
}

// The same expiry inside a synctest bubble, where time.Now is fake and the
// store uses its default clock.
func TestExpirySynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{Limits: Limits{TTLFloor: time.Second, Grace: time.Second}})
		els := s.Learn(Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.1"), 2 * time.Second}}})
		if len(els) != 1 || els[0].Timeout != 3*time.Second {
			t.Fatalf("Learn = %v, want one element with timeout 3s", els)
		}
		time.Sleep(2 * time.Second)
		s.Learn(Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.1"), 2 * time.Second}}})
		time.Sleep(2500 * time.Millisecond)
		if got := s.Names("weather", a("198.18.0.1")); len(got) != 1 {
			t.Fatalf("Names 2.5s after refresh = %v, want one", got)
		}
		time.Sleep(500 * time.Millisecond)
		if got := s.Names("weather", a("198.18.0.1")); got != nil {
			t.Fatalf("Names 3s after refresh = %v, want none", got)
		}
	})
}

func TestGrant(t *testing.T) {
	clk := newClock()
	s := New(Options{Limits: lim, Clock: clk})
	s.Learn(Learning{App: "weather", Name: "printer.example.com", Via: "_ipp._tcp.example.com", Grant: time.Minute,
		Addrs: []AddrTTL{{a("198.18.0.9"), time.Minute}}})
	via, ok := s.Granted("weather", "printer.example.com")
	if !ok || via != "_ipp._tcp.example.com" {
		t.Fatalf("Granted = %q, %v; want _ipp._tcp.example.com, true", via, ok)
	}
	if _, ok := s.Granted("news", "printer.example.com"); ok {
		t.Fatal("Granted for another app")
	}
	if _, ok := s.Granted("weather", "other.example.com"); ok {
		t.Fatal("Granted for another name")
	}
	clk.Advance(71 * time.Second)
	if _, ok := s.Granted("weather", "printer.example.com"); ok {
		t.Fatal("Granted after expiry")
	}
}

func TestElementsAndRetain(t *testing.T) {
	clk := newClock()
	s := New(Options{Limits: lim, Clock: clk})
	s.Learn(
		Learning{App: "weather", Name: "api.example.com", Ports: tcp443, Addrs: []AddrTTL{{a("198.18.0.1"), time.Minute}}},
		Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.1"), 2 * time.Minute}, {a("2001:db8::2"), time.Minute}}},
		Learning{App: "weather", Name: "printer.example.com", Via: "_ipp._tcp.example.com", Grant: time.Minute, Addrs: []AddrTTL{{a("198.18.0.9"), time.Minute}}},
		Learning{App: "weather", Name: "gone.example.com", Ports: tcp443, Addrs: []AddrTTL{{a("198.18.0.8"), time.Minute}}},
		Learning{App: "news", Name: "news.example.com", Ports: tcp80, Addrs: []AddrTTL{{a("198.18.0.1"), 10 * time.Second}}},
		Learning{App: "removed", Name: "x.example.com", Addrs: []AddrTTL{{a("198.18.0.7"), time.Minute}}},
		Learning{App: policy.SystemName, Name: "time.example.com", Ports: policy.Ports{{Proto: policy.UDP, Port: 123}}, Addrs: []AddrTTL{{a("198.18.0.123"), time.Minute}}},
	)
	clk.Advance(10 * time.Second)
	p := testPolicy(t)
	got := s.Elements(p, clk.Now())
	want := []Element{
		// news learned on tcp/80; the policy now opens tcp/80 and 443.
		{App: "news", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 80, Timeout: 10 * time.Second},
		{App: "news", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 443, Timeout: 10 * time.Second},
		{App: "system", Addr: a("198.18.0.123"), Proto: policy.UDP, Port: 123, Timeout: time.Minute},
		{App: "weather", Addr: a("198.18.0.1"), Timeout: 2 * time.Minute},
		{App: "weather", Addr: a("198.18.0.1"), Proto: policy.TCP, Port: 443, Timeout: time.Minute},
		{App: "weather", Addr: a("198.18.0.9"), Timeout: time.Minute},
		{App: "weather", Addr: a("2001:db8::2"), Timeout: time.Minute},
	}
	if diff := cmp.Diff(want, got, eqAddr); diff != "" {
		t.Errorf("Elements (-want +got):\n%s", diff)
	}

	if n := s.Retain(p); n != 2 {
		t.Errorf("Retain dropped %d, want 2 (gone.example.com, removed app)", n)
	}
	if got := s.Snapshot("removed"); got != nil {
		t.Errorf("Snapshot(removed) = %v, want nil", got)
	}
	if got := s.Names("weather", a("198.18.0.8")); got != nil {
		t.Errorf("Names(gone address) = %v, want nil", got)
	}
}

func TestConcurrent(t *testing.T) {
	s := New(Options{Limits: Limits{MaxPerApp: 500, MaxPerName: 8}})
	p := testPolicy(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				addr := netip.AddrFrom4([4]byte{198, 18, byte(g), byte(i)})
				els := s.Learn(Learning{App: []string{"weather", "news"}[g%2], Name: fmt.Sprintf("n%d.cdn.example", i%50), Addrs: []AddrTTL{{addr, time.Duration(i%7) * time.Second}}})
				s.Acknowledge(els, time.Now())
				switch i % 100 {
				case 0:
					s.Snapshot("weather")
					s.Elements(p, time.Now())
				case 1:
					s.Names("news", addr)
					s.Stats()
				case 2:
					s.Sweep()
				}
			}
		})
	}
	wg.Wait()
	for _, st := range s.Stats() {
		if st.Entries > 500 {
			t.Errorf("app %s has %d entries, above the cap 500", st.App, st.Entries)
		}
	}
}
