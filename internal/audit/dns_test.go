package audit

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// TestRecordDNS: an audit-mode lookup is a record of kind dns, repeats
// within the window aggregate, and the connection the firewall logs to an
// answered address names the host, for that app only, until the name's
// life ends.
func TestRecordDNS(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := New(Options{Clock: clock, Names: fakeNames{names: map[string]map[netip.Addr][]string{
		"weather": {addr("198.18.0.9"): {"learned.example"}},
	}}})
	defer l.Close()

	q := DNSQuery{App: "weather", Name: "tracker.example", Type: "A", Addrs: []netip.Addr{addr("198.18.0.9"), addr("198.18.0.10")},
		TTL: time.Minute, Reason: "not in AllowedConnections"}
	l.RecordDNS(q)
	clock.Add(time.Second)
	l.RecordDNS(q)
	got := l.Query(Filter{})
	want := []Record{{ID: 1, Kind: KindDNS, Count: 2, App: "weather", Verdict: logprefix.Audit,
		Name: "tracker.example", QType: "A", Addrs: q.Addrs, Reason: "not in AllowedConnections"}}
	if diff := cmp.Diff(want, got, ignoreTimes, addrCmp); diff != "" {
		t.Fatalf("Query after two lookups (-want +got):\n%s", diff)
	}

	pkt := udpOut("weather", 9) // to 198.18.0.9
	pkt.Prefix = logprefix.Prefix{Verdict: logprefix.Audit, Direction: logprefix.Out, Identity: "weather"}.String()
	l.Deliver(pkt)
	other := udpOut("news", 9)
	l.Deliver(other)
	got = l.Query(Filter{})
	if len(got) != 3 {
		t.Fatalf("records %+v, want the dns one and two packets", got)
	}
	if diff := cmp.Diff([]string{"learned.example", "tracker.example"}, got[1].Hosts); diff != "" {
		t.Errorf("hosts of weather's connection (-want +got):\n%s", diff)
	}
	if got[2].Hosts != nil {
		t.Errorf("news's connection to the address weather looked up names %v", got[2].Hosts)
	}

	// Past the name's life only what the store learned is left.
	clock.Add(minDNSNameLife + time.Minute)
	pkt2 := udpOut("weather", 10)
	l.Deliver(pkt2)
	got = l.Query(Filter{App: "weather"})
	if diff := cmp.Diff([]string{"learned.example"}, got[len(got)-1].Hosts); diff != "" {
		t.Errorf("hosts after the name's life (-want +got):\n%s", diff)
	}
	st := l.Stats()
	if n := st.Records[StatKey{App: "weather", Verdict: logprefix.Audit, Direction: DNSDirection}]; n != 1 {
		t.Errorf("dns records counted %d, want 1", n)
	}
}

// TestRecordDNSBounded: the remembered names stay under their cap.
func TestRecordDNSBounded(t *testing.T) {
	t.Parallel()
	l := New(Options{Clock: newFakeClock()})
	defer l.Close()
	for i := range maxDNSNames + 100 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		l.RecordDNS(DNSQuery{App: "weather", Name: "n.example", Type: "A", Addrs: []netip.Addr{a}})
	}
	l.mu.Lock()
	n := len(l.dnsNames)
	l.mu.Unlock()
	if n > maxDNSNames {
		t.Errorf("remembered %d addresses, cap %d", n, maxDNSNames)
	}
}
