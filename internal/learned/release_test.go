package learned

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// TestReleased: an entry a cap evicts gives back its kernel elements,
// unless another name of the same app still opens the same key; what is
// released is no longer acknowledged, so learning it again inserts it.
func TestReleased(t *testing.T) {
	clock := newClock()
	s := New(Options{Clock: clock, Limits: Limits{MaxPerName: 2, MaxPerApp: 5}})
	ip := func(x string) netip.Addr { return netip.MustParseAddr(x) }
	learn := func(name string, ports policy.Ports, addr string) []Element {
		t.Helper()
		el := s.Learn(Learning{App: "weather", Name: name, Ports: ports, Addrs: []AddrTTL{{Addr: ip(addr), TTL: time.Minute}}})
		s.Acknowledge(el, clock.Now())
		clock.Advance(time.Second)
		return el
	}
	learn("a.cdn.example", nil, "198.18.0.1")
	learn("a.cdn.example", nil, "198.18.0.2")
	learn("api.example.com", tcp443, "198.18.0.2") // same address, other name and port
	learn("b.cdn.example", nil, "198.18.0.2")      // same address, same key (any port)
	if s.HasReleased() || s.Released() != nil {
		t.Fatalf("released before any eviction")
	}

	// a.cdn.example's third address evicts 198.18.0.1: nobody else has it.
	learn("a.cdn.example", nil, "198.18.0.3")
	want := []Element{{App: "weather", Addr: ip("198.18.0.1")}}
	if diff := cmp.Diff(want, s.Released(), eqAddr); diff != "" {
		t.Errorf("Released after a per-name eviction (-want +got):\n%s", diff)
	}
	if s.HasReleased() || s.Released() != nil {
		t.Errorf("Released twice")
	}

	// The next evicts a.cdn.example's 198.18.0.2, which b.cdn.example still
	// opens on any port: nothing to revoke.
	learn("a.cdn.example", nil, "198.18.0.4")
	if got := s.Released(); got != nil {
		t.Errorf("Released an address another name still opens: %v", got)
	}

	// The per-app cap (5) evicts the oldest entries: api.example.com's (its
	// tcp/443 key goes, the any-port key stays for b.cdn.example), then
	// b.cdn.example's (now the any-port key goes too).
	learn("c.cdn.example", nil, "198.18.0.5")
	learn("c.cdn.example", nil, "198.18.0.6")
	learn("d.cdn.example", nil, "198.18.0.7")
	want = []Element{
		{App: "weather", Addr: ip("198.18.0.2")},
		{App: "weather", Addr: ip("198.18.0.2"), Proto: policy.TCP, Port: 443},
	}
	if diff := cmp.Diff(want, s.Released(), eqAddr); diff != "" {
		t.Errorf("Released after per-app evictions (-want +got):\n%s", diff)
	}
	if got := s.Names("weather", ip("198.18.0.2")); got != nil {
		t.Errorf("198.18.0.2 still named %v", got)
	}
}

// TestReleasedKeyLearnedAgain: a key released while the address stays
// learned on another key is inserted again by the next answer that needs
// it, and an acknowledgement of a key nobody needs any more is ignored.
func TestReleasedKeyLearnedAgain(t *testing.T) {
	clock := newClock()
	s := New(Options{Clock: clock, Limits: Limits{MaxPerName: 1}})
	addr := netip.MustParseAddr("198.18.0.9")
	learnAck := func(name string, ports policy.Ports, a netip.Addr) []Element {
		el := s.Learn(Learning{App: "weather", Name: name, Ports: ports, Addrs: []AddrTTL{{Addr: a, TTL: time.Hour}}})
		s.Acknowledge(el, clock.Now())
		return el
	}
	learnAck("api.example.com", tcp443, addr)
	learnAck("x.cdn.example", nil, addr)
	// x.cdn.example moves to another address (per-name cap 1): the any-port
	// key of 198.18.0.9 goes, its tcp/443 key stays.
	learnAck("x.cdn.example", nil, netip.MustParseAddr("198.18.0.10"))
	want := []Element{{App: "weather", Addr: addr}}
	if diff := cmp.Diff(want, s.Released(), eqAddr); diff != "" {
		t.Fatalf("Released (-want +got):\n%s", diff)
	}
	// A stale acknowledgement of the released key changes nothing...
	s.Acknowledge([]Element{{App: "weather", Addr: addr, Timeout: time.Hour}}, clock.Now())
	// ...so that learning it again inserts it.
	got := s.Learn(Learning{App: "weather", Name: "y.cdn.example", Addrs: []AddrTTL{{Addr: addr, TTL: time.Hour}}})
	if len(got) != 1 || got[0].Port != 0 || got[0].Addr != addr {
		t.Errorf("learning a released key again: elements %v, want the any-port element of %s", got, addr)
	}
}
