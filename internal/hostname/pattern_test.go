package hostname

import (
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in      string
		want    Pattern
		wantErr string
	}{
		{in: "example.com", want: Pattern{Exact, "example.com"}},
		{in: "Example.COM.", want: Pattern{Exact, "example.com"}},
		{in: "Bücher.example", want: Pattern{Exact, "xn--bcher-kva.example"}},
		{in: "*.example.com", want: Pattern{Wildcard, "example.com"}},
		{in: "*.Example.COM.", want: Pattern{Wildcard, "example.com"}},
		{in: "*.bücher.example", want: Pattern{Wildcard, "xn--bcher-kva.example"}},
		{in: "*.a.b.example.com", want: Pattern{Wildcard, "a.b.example.com"}},
		{in: "_sample-service._tcp.local", want: Pattern{Service, "_sample-service._tcp.local"}},
		{in: "_http._tcp.home", want: Pattern{Service, "_http._tcp.home"}},
		{in: "_HTTP._UDP.Example.com", want: Pattern{Service, "_http._udp.example.com"}},
		{in: "_a23456789012345._tcp.local", want: Pattern{Service, "_a23456789012345._tcp.local"}},

		{in: "", wantErr: "empty host name"},
		{in: "*", wantErr: `a lone "*" would allow every host`},
		{in: "*.", wantErr: "empty host name"},
		{in: "*.com", wantErr: "wildcard over the top-level domain"},
		{in: "*.*.example.com", wantErr: `"*" may appear only once`},
		{in: "a.*.example.com", wantErr: `"*" is allowed only as the whole first label`},
		{in: "*example.com", wantErr: `"*" is allowed only as the whole first label`},
		{in: "ex*mple.com", wantErr: `"*" is allowed only as the whole first label`},
		{in: "*.0.2.1", wantErr: "all digits"},
		{in: "*._http._tcp.local", wantErr: "cannot take a wildcard"},
		{in: "_http.local", wantErr: "is not a DNS-SD service name"},
		{in: "_http._sctp.local", wantErr: `second label must be "_tcp" or "_udp"`},
		{in: "_a234567890123456._tcp.local", wantErr: "must have 1 to 15 characters"},
		{in: "_http._tcp._local", wantErr: "must not start with '_'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePattern(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePattern(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePattern(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if again, err := ParsePattern(got.String()); err != nil || again != got {
				t.Errorf("ParsePattern(%q) = %+v, %v; want %+v again", got.String(), again, err, got)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		name    string
		want    bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "www.example.com", false},
		{"example.com", "example.co", false},
		{"Example.COM.", "example.com", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "evilexample.com", false},
		{"*.example.com", "a.evilexample.com", false},
		{"*.example.com", "example.com.evil.net", false},
		{"*.example.com", ".example.com", false},
		{"*.bücher.example", "www.xn--bcher-kva.example", true},
		{"_http._tcp.local", "_http._tcp.local", true},
		{"_http._tcp.local", "printer._http._tcp.local", true},
		{"_http._tcp.local", `my\.printer._http._tcp.local`, true},
		{"_http._tcp.local", "a.b._http._tcp.local", false},
		{"_http._tcp.local", "_http._tcp.local.evil", false},
		{"_http._tcp.local", "_ipp._tcp.local", false},
		{"_http._tcp.local", "._http._tcp.local", false},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q) = %v", tt.pattern, err)
		}
		if got := p.Match(tt.name); got != tt.want {
			t.Errorf("ParsePattern(%q).Match(%q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
		m := NewMatcher[int]()
		m.Add(p, 1)
		if got := m.Matches(tt.name); got != tt.want {
			t.Errorf("Matcher{%q}.Matches(%q) = %v, want %v (Pattern.Match and Matcher disagree)", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Exact: "host", Wildcard: "wildcard", Service: "dns-sd", Kind(9): "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}
