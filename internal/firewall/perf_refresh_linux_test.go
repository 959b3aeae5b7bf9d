package firewall

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// TestRefresh: Allow sets an element's expiry to exactly its timeout,
// whether the element is new or there already (longer, shorter, the same
// timeout after time passed, permanent and back), with the kernel's
// in-place update and with the add, delete, add fallback of older kernels.
func TestRefresh(t *testing.T) {
	modes := []struct {
		name    string
		inPlace bool
	}{{"in place", true}, {"add delete add", false}}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			if mode.inPlace && !timeoutUpdate() {
				t.Skip("kernel older than 6.12: no in-place timeout update")
			}
			f := newFirewall(t)
			f.inPlace = mode.inPlace
			a := appPolicy{name: "ref", app: netnstest.NewApp(t, "ref"), byUID: true}
			if err := f.Apply(makePolicy([]appPolicy{a}), nil); err != nil {
				t.Fatal(err)
			}
			v4 := netip.MustParseAddr("198.18.5.1")
			v6 := netip.MustParseAddr("2001:db8::5:1")
			left := func(addr netip.Addr, port uint16) (time.Duration, bool) {
				t.Helper()
				els, err := f.Elements("ref")
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range els {
					if e.Addr == addr && e.Port == port {
						return e.Timeout, true
					}
				}
				return 0, false
			}
			check := func(step string, addr netip.Addr, port uint16, want time.Duration) {
				t.Helper()
				got, ok := left(addr, port)
				switch {
				case !ok:
					t.Errorf("%s: %v port %d not in the set", step, addr, port)
				case want == 0 && got != 0:
					t.Errorf("%s: %v port %d expires in %v, want permanent", step, addr, port, got)
				case want != 0 && (got > want || got < want-2*time.Second):
					t.Errorf("%s: %v port %d expires in %v, want %v", step, addr, port, got, want)
				}
			}
			allow := func(step string, elems ...Element) {
				t.Helper()
				if err := f.Allow(elems); err != nil {
					t.Fatalf("%s: %v", step, err)
				}
			}
			el := func(addr netip.Addr, port uint16, d time.Duration) Element {
				e := Element{App: "ref", Addr: addr, Timeout: d}
				if port != 0 {
					e.Proto, e.Port = policy.TCP, port
				}
				return e
			}

			allow("new", el(v4, 0, time.Hour), el(v6, 443, time.Hour))
			check("new", v4, 0, time.Hour)
			check("new", v6, 443, time.Hour)
			allow("longer", el(v4, 0, 2*time.Hour), el(v6, 443, 2*time.Hour))
			check("longer", v4, 0, 2*time.Hour)
			check("longer", v6, 443, 2*time.Hour)
			allow("shorter", el(v4, 0, 10*time.Second))
			check("shorter", v4, 0, 10*time.Second)
			netnstest.WaitFor(t, 5*time.Second, func() bool { l, _ := left(v4, 0); return l < 9500*time.Millisecond })
			allow("same timeout again", el(v4, 0, 10*time.Second))
			if l, _ := left(v4, 0); l < 9800*time.Millisecond {
				t.Errorf("same timeout again: %v left, want the full 10s", l)
			}
			allow("permanent", el(v4, 0, 0))
			check("permanent", v4, 0, 0)
			allow("timed again", el(v4, 0, time.Hour))
			check("timed again", v4, 0, time.Hour)
			// Several sets, new and present elements in one call.
			v4b := netip.MustParseAddr("198.18.5.2")
			allow("mixed", el(v4, 0, 3*time.Hour), el(v4b, 0, 3*time.Hour), el(v6, 443, 3*time.Hour), el(v4b, 80, 3*time.Hour))
			check("mixed", v4, 0, 3*time.Hour)
			check("mixed", v4b, 0, 3*time.Hour)
			check("mixed", v6, 443, 3*time.Hour)
			check("mixed", v4b, 80, 3*time.Hour)
		})
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.12.0", true},
		{"6.18.44-fc-v782", true},
		{"7.0", true},
		{"6.11.9-arch1-1", false},
		{"6.6.58+rpt-rpi-v8", false},
		{"5.15.0-122-generic", false},
		{"6.12-rc1", true},
		{"6", false},
		{"", false},
		{"x.y", false},
	} {
		if got := kernelAtLeast(tc.release, 6, 12); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 6, 12) = %v, want %v", tc.release, got, tc.want)
		}
	}
}
