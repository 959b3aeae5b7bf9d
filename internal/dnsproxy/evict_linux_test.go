package dnsproxy

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
)

// TestEvictionLeavesKernel: with a cap of one learned entry per app, the
// second name's answer evicts the first's address, and the real kernel set
// holds only the second's: the first's address is closed at once, not when
// its timeout ends.
func TestEvictionLeavesKernel(t *testing.T) {
	l := newLab(t)
	l.addApp(t, "first", false, "origin.lab.example", "other.lab.example")
	p, err := l.spec.policy()
	if err != nil {
		t.Fatal(err)
	}
	p.DNS.MaxPerApp = 1
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l.fw, err = firewall.New(firewall.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.fw.Remove()
		l.fw.Close()
	})
	l.store = learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS), Logger: log})
	if err := l.fw.Apply(p, nil); err != nil {
		t.Fatal(err)
	}
	l.px, err = New(Options{Policy: p, Store: l.store, Inserter: l.fw, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.px.Close() })
	if err := l.px.Start(); err != nil {
		t.Fatal(err)
	}

	kernel := func() []netip.Addr {
		t.Helper()
		els, err := l.fw.Elements("first")
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Addr
		for _, e := range els {
			out = append(out, e.Addr)
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return out
	}
	origin, other := l.addr["origin"], l.addr["other"]
	if d := l.dig(t, "first", "origin.lab.example", "A"); d.status != "NOERROR" {
		t.Fatalf("dig origin: %q\n%s", d.status, d.out)
	}
	if got := kernel(); !slices.Equal(got, []netip.Addr{origin}) {
		t.Fatalf("kernel set after origin: %v, want [%s]", got, origin)
	}
	if r := l.curl(t, "first", origin.String()); r.code != 0 {
		t.Errorf("curl origin's address after resolving it: exit %d, want 0", r.code)
	}
	if d := l.dig(t, "first", "other.lab.example", "A"); d.status != "NOERROR" {
		t.Fatalf("dig other: %q\n%s", d.status, d.out)
	}
	// The answer came after the insert, and the revocation in the same
	// commit turn; Elements reads the kernel.
	if got := kernel(); !slices.Equal(got, []netip.Addr{other}) {
		t.Errorf("kernel set after other evicted origin: %v, want [%s]", got, other)
	}
	if r := l.curl(t, "first", origin.String()); r.code != 7 {
		t.Errorf("curl origin's address after its eviction: exit %d, want 7 (closed)", r.code)
	}
	if r := l.curl(t, "first", other.String()); r.code != 0 {
		t.Errorf("curl other's address: exit %d, want 0", r.code)
	}
	if st := l.px.Stats().Insert; st.Revoked != 1 {
		t.Errorf("revoked %d elements, want 1", st.Revoked)
	}
}
