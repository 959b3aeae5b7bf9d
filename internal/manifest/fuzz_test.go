package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pinhole-net/pinhole/internal/hostname"
)

// FuzzParse checks that Parse never panics, that a refusal carries only
// errors and no manifest, and that a loaded manifest is consistent: every
// connection validates again from its raw and canonical forms.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/conformance/*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, diags, err := Parse("f.json", data)
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, d := range diags {
			if d.Line < 1 || d.Col < 1 || d.Line > lines {
				t.Errorf("diagnostic %v lies outside the %d-line input", d, lines)
			}
			if d.File != "f.json" || d.Message == "" || (d.Severity != Error && d.Severity != Warning) {
				t.Errorf("malformed diagnostic %#v", d)
			}
		}
		errs, _ := Count(diags)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned a manifest with error %v", err)
			}
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v is not an *InvalidError", err)
			}
			if len(ie.Diagnostics) == 0 || len(ie.Diagnostics) != errs {
				t.Fatalf("InvalidError holds %d diagnostics, the result %d errors", len(ie.Diagnostics), errs)
			}
			return
		}
		if m == nil || errs != 0 {
			t.Fatalf("Parse = %v, %d errors, nil error", m, errs)
		}
		checkManifest(t, m)
	})
}

func checkManifest(t *testing.T, m *Manifest) {
	c := m.Capabilities
	for _, conn := range c.AllowedConnections {
		again, err := ParseEntry(conn.Raw)
		if err != nil {
			t.Fatalf("accepted entry %q fails ParseEntry: %v", conn.Raw, err)
		}
		again.Path, again.Line, again.Col = conn.Path, conn.Line, conn.Col
		if again != conn {
			t.Fatalf("ParseEntry(%q) = %+v, manifest has %+v", conn.Raw, again, conn)
		}
		canon, err := ParseEntry(conn.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q fails: %v", conn.String(), conn.Raw, err)
		}
		if canon.Kind != conn.Kind || canon.Pattern != conn.Pattern || canon.Addr != conn.Addr || canon.Port != conn.Port {
			t.Fatalf("canonical form %q of %q reads as %+v, want %+v", conn.String(), conn.Raw, canon, conn)
		}
		switch conn.Kind {
		case ConnIPv4, ConnIPv6:
			if !conn.Addr.IsValid() || conn.Addr.Is4() != (conn.Kind == ConnIPv4) || conn.Addr.Zone() != "" || conn.Pattern != (hostname.Pattern{}) {
				t.Fatalf("address entry %q is inconsistent: %+v", conn.Raw, conn)
			}
		case ConnHost, ConnWildcard, ConnService:
			p, err := hostname.ParsePattern(conn.Pattern.String())
			if err != nil || p != conn.Pattern || conn.Addr.IsValid() {
				t.Fatalf("pattern entry %q is inconsistent: %+v (re-parse %v, %v)", conn.Raw, conn, p, err)
			}
		default:
			t.Fatalf("entry %q has kind %v", conn.Raw, conn.Kind)
		}
		if p, ok := m.Position(conn.Path); !ok || p.Line != conn.Line || p.Col != conn.Col {
			t.Fatalf("entry %q at %d:%d, Position(%s) = %v, %v", conn.Raw, conn.Line, conn.Col, conn.Path, p, ok)
		}
	}
	for _, ports := range [][]uint16{c.AllowedTCPServerPorts, c.AllowedUDPServerPorts} {
		if slices.Contains(ports, 0) {
			t.Fatalf("server ports %v hold 0", ports)
		}
		s := slices.Clone(ports)
		slices.Sort(s)
		if len(slices.Compact(s)) != len(ports) {
			t.Fatalf("server ports %v hold duplicates", ports)
		}
	}
	if m.SchemaVersion != 0 && m.SchemaVersion != 1 {
		t.Fatalf("SchemaVersion %d", m.SchemaVersion)
	}
	if m.ApplicationType != "" && m.ApplicationType != AppTypeDefault && m.ApplicationType != AppTypeRealTimeCapable {
		t.Fatalf("ApplicationType %q", m.ApplicationType)
	}
}
