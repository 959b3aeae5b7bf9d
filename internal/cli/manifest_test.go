package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const conformanceDir = "../manifest/testdata/conformance"

// runCLI runs the pinhole command tree in process and returns its output
// and the exit code main would use.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	var exit *ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.Code
	}
	t.Fatalf("pinhole %s: unexpected error %v\noutput:\n%s", strings.Join(args, " "), err, out.String())
	return "", 0
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestManifestLintConformance(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(conformanceDir, "*.json"))
	if err != nil || len(files) != 83 {
		t.Fatalf("glob conformance files: %d files, %v", len(files), err)
	}
	out, code := runCLI(t, append([]string{"manifest", "lint"}, files...)...)
	if code != 1 {
		t.Errorf("exit code = %d, want 1 (five manifests hold placeholders)", code)
	}
	var errs []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, ": error: ") {
			errs = append(errs, strings.TrimPrefix(line, conformanceDir+"/"))
		}
	}
	want := []string{
		`gallery__AzureEventGrid.json:8:33: error: Capabilities.AllowedConnections[0]: "<your_event_grid_mqtt_hostname>": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
		`gallery__CO2_MonitorHealthySpaces__src.json:17:7: error: Capabilities.AllowedConnections[1]: "REPLACE_WITH_YOUR_AZURE_IOT_HUB_OR_IOT_CENTRAL_URLS": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
		`gallery__CO2_MonitorHealthySpaces__src.json:19:29: error: Capabilities.DeviceAuthentication: "REPLACE_WITH_YOUR_AZURE_SPHERE_TENANT_ID": looks like a placeholder left from a sample: put your Azure Sphere tenant ID here (Azure Sphere error 2097176)`,
		`gallery__HTTPS_MutualAuth__Azsphere.json:8:29: error: Capabilities.AllowedConnections[0]: "CHANGE THIS": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
		`gallery__LittleFs_Encrypted_RemoteDisk__src__HighLevelApp.json:8:29: error: Capabilities.AllowedConnections[0]: "": empty entry: put the host name or IPv4 address the app connects to here, or remove the entry (Azure Sphere error 2097161 ConnectionsParseError)`,
		`samples__Samples__Iperf.json:20:7: error: Capabilities.AllowedConnections[0]: "<IPERF SERVER IP ADDRESS>": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`,
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("error lines mismatch (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(out, "83 files: 78 ok, 5 refused; 6 errors, 59 warnings\n") {
		t.Errorf("summary line wrong; output ends:\n%s", out[max(0, len(out)-200):])
	}
}

func TestManifestLint(t *testing.T) {
	dir := t.TempDir()
	clean := writeFile(t, dir, "clean.json", `{
  "SchemaVersion": 1, "Name": "w", "ComponentId": "1689d8b2-c835-2e27-27ad-e894d6d15fa9",
  "EntryPoint": "/bin/app", "CmdArgs": [],
  "Capabilities": { "AllowedConnections": [ "example.com", "192.0.2.7" ], "AllowedTcpServerPorts": [ 8080 ] },
  "ApplicationType": "Default"
}`)
	ext := writeFile(t, dir, "ext.json", `{
  "SchemaVersion": 1, "Name": "w", "ComponentId": "1689d8b2-c835-2e27-27ad-e894d6d15fa9",
  "EntryPoint": "/bin/app", "CmdArgs": [],
  "Capabilities": { "AllowedConnections": [ "*.example.com", "2001:db8::1", "api.example.net:443" ] }
}`)
	warnOnly := writeFile(t, dir, "warn.json", `{ "Capabilities": { "NetworkConfig": true } }`)
	bad := writeFile(t, dir, "bad.json", `{ "Capabilities": { "AllowedTcpServerPorts": [ 0, 70000 ] } }`)
	missing := filepath.Join(dir, "missing.json")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // lines the output must hold
	}{
		{name: "clean", args: []string{clean}, want: []string{"1 file: 1 ok, 0 refused; 0 errors, 0 warnings"}},
		{name: "extensions are fine by default", args: []string{ext}, want: []string{"1 file: 1 ok, 0 refused; 0 errors, 0 warnings"}},
		{
			name: "strict refuses extensions", args: []string{"--strict", ext}, wantCode: 1,
			want: []string{
				ext + `:4:45: error: Capabilities.AllowedConnections[0]: "*.example.com": wildcards are a pinhole extension; Azure Sphere accepts only exact host names (Azure Sphere error 2097161 ConnectionsParseError)`,
				ext + `:4:62: error: Capabilities.AllowedConnections[1]: "2001:db8::1": IPv6 addresses are a pinhole extension; Azure Sphere is IPv4 only (Azure Sphere error 2097161 ConnectionsParseError)`,
				ext + `:4:77: error: Capabilities.AllowedConnections[2]: "api.example.net:443": ports are a pinhole extension; Azure Sphere entries carry no port (Azure Sphere error 2097161 ConnectionsParseError)`,
				"1 file: 0 ok, 1 refused; 3 errors, 0 warnings",
			},
		},
		{name: "warnings alone never fail", args: []string{warnOnly}, want: []string{"1 file: 1 ok, 0 refused; 0 errors, 5 warnings"}},
		{
			name: "strict makes missing required fields errors", args: []string{warnOnly, "--strict"}, wantCode: 1,
			want: []string{
				warnOnly + `:1:1: error: SchemaVersion: missing; Azure Sphere requires "SchemaVersion": 1 (Azure Sphere error 2097156)`,
				"1 file: 0 ok, 1 refused; 5 errors, 0 warnings",
			},
		},
		{
			name: "errors fail", args: []string{clean, bad}, wantCode: 1,
			want: []string{
				bad + ":1:48: error: Capabilities.AllowedTcpServerPorts[0]: 0: is outside the port range 1..65535 (Azure Sphere error 2097190 IllegalTcpPortsValue)",
				bad + ":1:51: error: Capabilities.AllowedTcpServerPorts[1]: 70000: is outside the port range 1..65535 (Azure Sphere error 2097190 IllegalTcpPortsValue)",
				"2 files: 1 ok, 1 refused; 2 errors, 5 warnings",
			},
		},
		{
			name: "unreadable file", args: []string{missing}, wantCode: 1,
			want: []string{missing + ": error: read manifest: open " + missing + ": no such file or directory", "1 file: 0 ok, 1 refused; 1 error, 0 warnings"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runCLI(t, append([]string{"manifest", "lint"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\noutput:\n%s", code, tt.wantCode, out)
			}
			lines := strings.Split(out, "\n")
			for _, w := range tt.want {
				found := false
				for _, l := range lines {
					found = found || l == w
				}
				if !found {
					t.Errorf("output lacks line\n%s\noutput:\n%s", w, out)
				}
			}
		})
	}
}

func TestManifestLintJSON(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.json", `{
  "SchemaVersion": 1, "Name": "weather", "ComponentId": "1689d8b2-c835-2e27-27ad-e894d6d15fa9",
  "EntryPoint": "/bin/app", "CmdArgs": [],
  "Capabilities": { "AllowedConnections": [ "Example.com", "*.blob.core.windows.net:443", "192.0.2.7" ], "AllowedUdpServerPorts": [ 1824 ] },
  "ApplicationType": "Default"
}`)
	iperf := filepath.Join(conformanceDir, "samples__Samples__Iperf.json")
	out, code := runCLI(t, "manifest", "lint", "--json", good, iperf)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	type conn struct {
		Entry, Path, Kind, Value, Extension string
		Line, Col                           int
		Port                                int
	}
	type diag struct {
		File, Path, Entry, Severity, Message, CodeName string
		Line, Col, Code                                int
	}
	type result struct {
		File        string
		OK          bool
		Errors      int
		Warnings    int
		Diagnostics []diag
		Manifest    *struct {
			Name                  string
			AllowedConnections    []conn
			AllowedTCPServerPorts []int `json:"allowedTcpServerPorts"`
			AllowedUDPServerPorts []int `json:"allowedUdpServerPorts"`
		}
	}
	var got []result
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(got) != 2 {
		t.Fatalf("got %d results, want 2", len(got))
	}
	g := got[0]
	if g.File != good || !g.OK || g.Errors != 0 || g.Manifest == nil || g.Manifest.Name != "weather" {
		t.Errorf("good result = %+v", g)
	}
	wantConns := []conn{
		{Entry: "Example.com", Path: "Capabilities.AllowedConnections[0]", Line: 4, Col: 45, Kind: "host", Value: "example.com"},
		{Entry: "*.blob.core.windows.net:443", Path: "Capabilities.AllowedConnections[1]", Line: 4, Col: 60, Kind: "wildcard", Value: "*.blob.core.windows.net", Port: 443,
			Extension: "wildcards are a pinhole extension; Azure Sphere accepts only exact host names; ports are a pinhole extension; Azure Sphere entries carry no port"},
		{Entry: "192.0.2.7", Path: "Capabilities.AllowedConnections[2]", Line: 4, Col: 91, Kind: "ipv4", Value: "192.0.2.7"},
	}
	if g.Manifest != nil {
		if diff := cmp.Diff(wantConns, g.Manifest.AllowedConnections); diff != "" {
			t.Errorf("connections mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int{1824}, g.Manifest.AllowedUDPServerPorts); diff != "" || g.Manifest.AllowedTCPServerPorts == nil {
			t.Errorf("ports: udp %v, tcp %v", g.Manifest.AllowedUDPServerPorts, g.Manifest.AllowedTCPServerPorts)
		}
	}
	b := got[1]
	wantDiag := []diag{{
		File: iperf, Path: "Capabilities.AllowedConnections[0]", Line: 20, Col: 7, Entry: `"<IPERF SERVER IP ADDRESS>"`, Severity: "error",
		Message: "looks like a placeholder left from a sample: put your real host name here", Code: 2097161, CodeName: "ConnectionsParseError",
	}}
	if b.OK || b.Errors != 1 || b.Manifest != nil {
		t.Errorf("iperf result = %+v, want refused without manifest", b)
	}
	if diff := cmp.Diff(wantDiag, b.Diagnostics); diff != "" {
		t.Errorf("iperf diagnostics mismatch (-want +got):\n%s", diff)
	}
}

func TestManifestLintNeedsFiles(t *testing.T) {
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"manifest", "lint"})
	if err := root.Execute(); err == nil {
		t.Errorf("manifest lint without files succeeded")
	}
}
