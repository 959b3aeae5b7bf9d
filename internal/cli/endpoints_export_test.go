package cli

import (
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// examplesDir is the repository's examples/ directory.
func examplesDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

// TestEndpointsExportConfig: with --config, the export holds pinholed's
// endpoints and every app's entries, on the ports the manifests give.
func TestEndpointsExportConfig(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(examplesDir(t), "pinhole.yaml")
	out, err := runEndpoints(t, "export", "--format", "dnsmasq", "--device", "192.168.10.0/24", "--config", cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		// webfetch: a wildcard with any port.
		regexp.MustCompile(`(?m)^nftset=/contoso-cdn\.example/4#inet#pinhole_devices#any_v4,6#inet#pinhole_devices#any_v6$`),
		// pinholed's own endpoints from the azure-sphere profile.
		regexp.MustCompile(`(?m)^nftset=/global\.azure-devices-provisioning\.net/.*#tcp_8883_v4`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output does not match %s:\n%s", want, out)
		}
	}
	nft, err := runEndpoints(t, "export", "--device", "192.168.10.0/24", "--config", cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, nft)
	}
	for _, want := range []string{
		"elements = { 192.168.1.20 }", // webfetch's literal address
		"app webfetch serves TCP port 8080",
		"# everything " + cfg + " allows: pinholed (profile azure-sphere) and apps",
	} {
		if !strings.Contains(nft, want) {
			t.Errorf("nftables output lacks %q", want)
		}
	}
}

func TestEndpointsExportErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export"}, "--device is required"},
		{[]string{"export", "--device", "eth0"}, `--device: device "eth0"`},
		{[]string{"export", "--device", "10.0.0.0/8", "--format", "pf"}, `--format "pf": want nftables or dnsmasq`},
		{[]string{"export", "--device", "10.0.0.0/8", "--dns-server", "dns.example"}, `--dns-server "dns.example"`},
		{[]string{"export", "--device", "10.0.0.0/8", "--table", "my table"}, `table name "my table"`},
		{[]string{"export", "--device", "10.0.0.0/8", "--profile", "azure-iot-hub"}, "--hub"},
	} {
		out, err := runEndpoints(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("endpoints %s: err = %v, want one containing %q\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
}
