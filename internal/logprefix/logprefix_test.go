package logprefix

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Prefix
		wantErr string
	}{
		{in: "ph deny out weather", want: Prefix{Deny, Out, "weather"}},
		{in: "ph audit in unmanaged", want: Prefix{Audit, In, "unmanaged"}},
		{in: "ph deny out system\x00", want: Prefix{Deny, Out, "system"}},
		{in: "ph deny out weather ", want: Prefix{Deny, Out, "weather"}},
		{in: "appfw-deny ", wantErr: "is not pinhole's"},
		{in: "ph deny out", wantErr: "is not pinhole's"},
		{in: "ph deny out a b", wantErr: "is not pinhole's"},
		{in: "ph allow out a", wantErr: `unknown verdict "allow"`},
		{in: "ph deny sideways a", wantErr: `unknown direction "sideways"`},
		{in: "", wantErr: "is not pinhole's"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q) = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts formats back to a
// prefix that parses to the same value and fits nftables' limit when the
// identity is an app name.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"ph deny out weather", "ph audit in unmanaged", "ph deny out system\x00", "ph  deny\tout x", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(p.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, but its String %q does not parse: %v", s, p, p.String(), err)
		}
		if again != p {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, p)
		}
		if len(p.Identity) <= 31 && len(p.String()) > MaxLen {
			t.Fatalf("prefix %q is longer than %d", p.String(), MaxLen)
		}
	})
}
