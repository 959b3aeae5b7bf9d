package hostname

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 plus 3 dots = 255; trim to exactly 253 and 254.
	name253 := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	tests := []struct {
		in      string
		want    string
		wantErr string // part of the error; empty when accepted
	}{
		{in: "example.com", want: "example.com"},
		{in: "Example.COM", want: "example.com"},
		{in: "example.com.", want: "example.com"},
		{in: "EXAMPLE.com.", want: "example.com"},
		{in: "Bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.Example.", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "例え.テスト", want: "xn--r8jz45g.xn--zckzah"},
		{in: "faß.de", want: "xn--fa-hia.de"}, // non-transitional: ß stays ß
		{in: "a--b.example", want: "a--b.example"},
		{in: "printer", want: "printer"},
		{in: "123", want: "123"},
		{in: "17853.live.example", want: "17853.live.example"},
		{in: "_http._tcp.local", want: "_http._tcp.local"},
		{in: label63 + ".com", want: label63 + ".com"},
		{in: name253, want: name253},

		{in: "", wantErr: "empty host name"},
		{in: ".", wantErr: "empty host name"},
		{in: "a..b", wantErr: "empty label"},
		{in: ".a", wantErr: "empty label"},
		{in: "a..", wantErr: "empty label"},
		{in: label63 + "a.com", wantErr: "is 64 octets long, more than 63"},
		{in: name253 + "b", wantErr: "name is 254 octets long, more than 253"},
		{in: "-a.com", wantErr: `label "-a" starts with a hyphen`},
		{in: "a-.com", wantErr: `label "a-" ends with a hyphen`},
		{in: "a.-", wantErr: "starts with a hyphen"},
		{in: "a_b.com", wantErr: "contains '_'"},
		{in: "_.com", wantErr: `label "_" has nothing after the underscore`},
		{in: "a b.com", wantErr: "contains a space"},
		{in: "a@b.com", wantErr: "contains '@'"},
		{in: "1.2.3.4", wantErr: "top-level label \"4\" is all digits"},
		{in: "a\u200db.com", wantErr: "internationalised name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Normalize(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			// Normal forms are fixed points and pass Validate.
			if again, err := Normalize(got); err != nil || again != got {
				t.Errorf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
			}
			if err := Validate(got); err != nil {
				t.Errorf("Validate(%q) = %v", got, err)
			}
		})
	}
}

func TestValidateWantsNormalForm(t *testing.T) {
	for _, in := range []string{"Example.com", "example.com.", "bücher.example"} {
		if err := Validate(in); err == nil {
			t.Errorf("Validate(%q) = nil, want an error (not normalised)", in)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com.", "example.com"},
		{"WWW.Example.COM.", "www.example.com"},
		{"example.com", "example.com"},
		{".", ""},
		{"", ""},
		// DNS-SD instance labels may hold any bytes; only ASCII letters fold.
		{"Drucker B\u00dcro._ipp._tcp.local.", "drucker b\u00dcro._ipp._tcp.local"},
		{"A\xff\xfeB._http._tcp.local", "a\xff\xfeb._http._tcp.local"},
	}
	for _, tt := range tests {
		if got := CanonicalQuery(tt.in); got != tt.want {
			t.Errorf("CanonicalQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
