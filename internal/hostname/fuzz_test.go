package hostname

import (
	"strings"
	"testing"
)

// FuzzParsePattern checks that ParsePattern never panics and that what it
// accepts is normal: re-parsing String() gives the same pattern, the name
// passes Validate, and Match and Matcher agree on names derived from it.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{
		"example.com", "Example.COM.", "*.example.com", "*.com", "*", "_http._tcp.local",
		"_sample-service._tcp.local", "Bücher.example", "*.bücher.example", "例え.テスト",
		"a..b", "-a.com", "a_b.com", "1.2.3.4", "xn--bcher-kva.example", "ß.de", "a\u3002b.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			if p != (Pattern{}) {
				t.Fatalf("ParsePattern(%q) = %+v with error %v", s, p, err)
			}
			return
		}
		again, err := ParsePattern(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePattern(%q) = %+v, but its String() %q reads as %+v, %v", s, p, p.String(), again, err)
		}
		if err := Validate(p.Name); err != nil {
			t.Fatalf("ParsePattern(%q) gave name %q that fails Validate: %v", s, p.Name, err)
		}
		if CanonicalQuery(p.Name) != p.Name {
			t.Fatalf("name %q is not canonical", p.Name)
		}
		m := NewMatcher[int]()
		m.Add(p, 1)
		names := []string{p.Name, "x." + p.Name, "a.b." + p.Name, "x" + p.Name, p.Name + ".x"}
		if i := strings.IndexByte(p.Name, '.'); i >= 0 {
			names = append(names, p.Name[i+1:])
		}
		for _, n := range names {
			if got, want := m.Matches(n), p.Match(n); got != want {
				t.Fatalf("pattern %+v: Matcher.Matches(%q) = %v, Match = %v", p, n, got, want)
			}
		}
		switch p.Kind {
		case Exact, Service:
			if !p.Match(p.Name) {
				t.Fatalf("pattern %+v does not match its own name", p)
			}
		case Wildcard:
			if p.Match(p.Name) || !p.Match("x."+p.Name) {
				t.Fatalf("wildcard %+v matches its apex or not a name below it", p)
			}
		default:
			t.Fatalf("ParsePattern(%q) gave kind %v", s, p.Kind)
		}
		if p.Match("x"+p.Name) && p.Kind != Service {
			t.Fatalf("pattern %+v matches %q, which only shares a suffix", p, "x"+p.Name)
		}
	})
}
