package hostname

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustPattern(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := ParsePattern(s)
	if err != nil {
		t.Fatalf("ParsePattern(%q) = %v", s, err)
	}
	return p
}

func TestMatcher(t *testing.T) {
	m := NewMatcher[string]()
	for _, s := range []string{
		"example.com", "www.example.com", "*.example.com", "*.b.example.com",
		"xn--bcher-kva.example", "*.Bücher.example", "_http._tcp.local", "api.example.net",
	} {
		m.Add(mustPattern(t, s), s)
	}
	m.Add(mustPattern(t, "EXAMPLE.com."), "again example.com")
	m.Add(Pattern{Kind: Kind(0), Name: "ignored"}, "bad kind")
	if got, want := m.Len(), 9; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"example.com", []string{"example.com", "again example.com"}},
		{"EXAMPLE.COM.", []string{"example.com", "again example.com"}},
		{"www.example.com", []string{"www.example.com", "*.example.com"}},
		{"a.example.com", []string{"*.example.com"}},
		{"a.b.example.com", []string{"*.b.example.com", "*.example.com"}},
		{"b.example.com", []string{"*.example.com"}},
		{"evilexample.com", nil},
		{"example.com.evil.net", nil},
		{"com", nil},
		{"", nil},
		{".", nil},
		{"xn--bcher-kva.example", []string{"xn--bcher-kva.example"}},
		{"shop.xn--bcher-kva.example", []string{"*.Bücher.example"}},
		{"_http._tcp.local", []string{"_http._tcp.local"}},
		{"Printer._HTTP._tcp.local.", []string{"_http._tcp.local"}},
		{"a.b._http._tcp.local", nil},
		{"api.example.net", []string{"api.example.net"}},
		{"x.api.example.net", nil},
		// Literals are names here; addresses never reach the matcher as
		// patterns, and a lookup of one matches nothing.
		{"192.0.2.1", nil},
		{"2001:db8::1", nil},
	}
	for _, tt := range tests {
		q := CanonicalQuery(tt.query)
		got := m.AppendMatches(nil, q)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("AppendMatches(%q) mismatch (-want +got):\n%s", q, diff)
		}
		if m.Matches(q) != (len(tt.want) > 0) {
			t.Errorf("Matches(%q) = %v, want %v", q, m.Matches(q), len(tt.want) > 0)
		}
	}
}

func TestMatcherEmpty(t *testing.T) {
	m := NewMatcher[int]()
	if m.Matches("example.com") || m.Len() != 0 {
		t.Errorf("empty Matcher matches or has length %d", m.Len())
	}
}

// TestMatcherAgreesWithPatterns compares the matcher with a linear scan of
// Pattern.Match over many patterns and names.
func TestMatcherAgreesWithPatterns(t *testing.T) {
	pats, queries := benchPatterns(500)
	m := NewMatcher[int]()
	for i, p := range pats {
		m.Add(p, i)
	}
	for _, q := range queries {
		var want []int
		for i, p := range pats {
			if p.Match(q) {
				want = append(want, i)
			}
		}
		got := m.AppendMatches(nil, q)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("AppendMatches(%q) mismatch with linear scan (-scan +matcher):\n%s", q, diff)
		}
	}
}

func TestMatcherDoesNotAllocate(t *testing.T) {
	pats, queries := benchPatterns(10000)
	m := NewMatcher[int]()
	for i, p := range pats {
		m.Add(p, i)
	}
	buf := make([]int, 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		for _, q := range queries {
			buf = m.AppendMatches(buf[:0], q)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendMatches with a reused buffer allocates %.1f times per round, want 0", allocs)
	}
}

// benchPatterns builds n patterns, half exact and half wildcard, over
// n/10 domains, and queries that hit exact names, hit wildcards one and
// three labels deep, and miss.
func benchPatterns(n int) ([]Pattern, []string) {
	var pats []Pattern
	domains := max(n/10, 1)
	for i := 0; len(pats) < n; i++ {
		d := fmt.Sprintf("tenant%d.example%d.com", i%domains, i%7)
		if i%2 == 0 {
			pats = append(pats, Pattern{Kind: Exact, Name: fmt.Sprintf("host%d.%s", i, d)})
		} else {
			pats = append(pats, Pattern{Kind: Wildcard, Name: fmt.Sprintf("svc%d.%s", i, d)})
		}
	}
	queries := []string{
		pats[0].Name,                              // exact hit
		"a." + pats[1].Name,                       // wildcard hit
		"x.y.z." + pats[len(pats)-1].Name,         // deep wildcard hit
		pats[1].Name,                              // wildcard apex: miss
		"host1.nowhere.example.org",               // miss
		"evil" + pats[3].Name,                     // suffix without dot: miss
		"a.b.c.d.e.f.g.h.tenant1.example1.com",    // many labels, miss
		"prod.device.core.sphere.azure.net",       // realistic miss
		fmt.Sprintf("host%d.%s", n-2, "nowhere."), // near miss
	}
	for i := range queries {
		queries[i] = CanonicalQuery(queries[i])
	}
	return pats, queries
}

// BenchmarkMatcher looks names up among 10,000 exact and wildcard
// patterns with a reused buffer; the target is 0 allocations.
func BenchmarkMatcher(b *testing.B) {
	pats, queries := benchPatterns(10000)
	m := NewMatcher[int]()
	for i, p := range pats {
		m.Add(p, i)
	}
	for _, bm := range []struct {
		name  string
		query string
	}{
		{"exact-hit", queries[0]},
		{"wildcard-hit", queries[1]},
		{"deep-wildcard-hit", queries[2]},
		{"miss", queries[4]},
		{"miss-many-labels", queries[6]},
	} {
		b.Run(bm.name, func(b *testing.B) {
			buf := make([]int, 0, 16)
			b.ReportAllocs()
			for b.Loop() {
				buf = m.AppendMatches(buf[:0], bm.query)
			}
		})
	}
	b.Run("mix", func(b *testing.B) {
		buf := make([]int, 0, 16)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			buf = m.AppendMatches(buf[:0], queries[i%len(queries)])
			i++
		}
	})
}
