package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pinhole-net/pinhole/internal/catalog"
)

// runEndpoints runs "pinhole endpoints ARGS" in process.
func runEndpoints(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"endpoints"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestEndpointsMarkdown(t *testing.T) {
	t.Parallel()
	out, err := runEndpoints(t, "--format", "markdown")
	if err != nil {
		t.Fatal(err)
	}
	want := `| protocol | transport | port | hosts | purpose |
|---|---|---|---|---|
| MQTT over TCP | tcp | 8883 | global.azure-devices-provisioning.net | Device provisioning and communication with Azure IoT Hub |
| MQTT over TCP | tcp | 443 (WebSocket) | global.azure-devices-provisioning.net | Device provisioning and communication with Azure IoT Hub |
| HTTP over TCP | tcp | 80 | www.msftconnecttest.com, prod.update.sphere.azure.net | Internet connection checks, certificate file downloads, and similar tasks |
| HTTPS over TCP | tcp | 443 | anse.azurewatson.microsoft.com, prod.device.core.sphere.azure.net, prod.deviceauth.sphere.azure.net, prod.dinsights.core.sphere.azure.net, prod.releases.sphere.azure.net, prod.core.sphere.azure.net, prodmsimg.blob.core.windows.net, prodptimg.blob.core.windows.net, prodmsimg-secondary.blob.core.windows.net, prodptimg-secondary.blob.core.windows.net, sphereblobeus.azurewatson.microsoft.com, sphereblobweus.azurewatson.microsoft.com, sphere.sb.dl.delivery.mp.microsoft.com | Communication with web services and Azure Sphere Security service (see Restricting network access to Azure Sphere Security Services) |
| UDP | udp | 53 | (the configured DNS servers) | Communication with domain name servers (DNS) |
| UDP | udp | 123 | prod.time.sphere.azure.net, time.sphere.azure.net | Communication with NTP server (optional) |
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("endpoints --format markdown (-want +got):\n%s", diff)
	}
}

func TestEndpointsTable(t *testing.T) {
	t.Parallel()
	out, err := runEndpoints(t, "--profile", "azure-iot-hub", "--hub", "contoso-hub", "--ntp-server", "time.example.com", "--ntp-server", "192.0.2.123")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "Profile azure-iot-hub: ") || lines[1] != "" {
		t.Errorf("title lines = %q", lines[:2])
	}
	// Columns line up: each row's host starts where the HOST header does.
	header := lines[2]
	hostCol := strings.Index(header, "HOST")
	if !strings.HasPrefix(header, "PROTOCOL") || hostCol < 0 {
		t.Fatalf("header = %q", header)
	}
	var hosts []string
	for _, l := range lines[3:] {
		if l == "" {
			break
		}
		f := strings.Fields(l[hostCol:])
		hosts = append(hosts, f[0])
	}
	want := []string{
		"contoso-hub.azure-devices.net", "contoso-hub.azure-devices.net", "contoso-hub.azure-devices.net",
		"global.azure-devices-provisioning.net", "global.azure-devices-provisioning.net",
		"(the", "(the", "time.example.com", "192.0.2.123",
	}
	if diff := cmp.Diff(want, hosts); diff != "" {
		t.Errorf("HOST column (-want +got):\n%s\noutput:\n%s", diff, out)
	}
	for i, l := range lines {
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %d ends in spaces: %q", i+1, l)
		}
	}
	if !strings.Contains(out, "Time synchronisation (TLS needs a correct clock) (optional)") {
		t.Errorf("optional NTP row not marked:\n%s", out)
	}
	if !strings.HasSuffix(out, "\nSource: "+mustLoad(t, "azure-iot-hub", map[string]string{"hub": "x-hub"}).Source+"\n") {
		t.Errorf("no source line:\n%s", out)
	}
}

func mustLoad(t *testing.T, name string, params map[string]string) *catalog.Profile {
	t.Helper()
	p, err := catalog.Load(name, params)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEndpointsJSON(t *testing.T) {
	t.Parallel()
	out, err := runEndpoints(t, "--profile", "minimal", "--ntp-server", "a.example,2001:db8::123", "--connectivity-url", "https://check.example/ok", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got catalog.Profile
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	want := mustLoad(t, "minimal", map[string]string{"ntp_servers": "a.example,2001:db8::123", "connectivity_url": "https://check.example/ok"})
	if diff := cmp.Diff(want, &got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("endpoints --format json (-want +got):\n%s", diff)
	}
	if !strings.Contains(out, `"addrs": [`) || !strings.Contains(out, `"2001:db8::123"`) {
		t.Errorf("addresses not written as text:\n%s", out)
	}
}

func TestEndpointsCSV(t *testing.T) {
	t.Parallel()
	out, err := runEndpoints(t, "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v", err)
	}
	p := mustLoad(t, "azure-sphere", nil)
	n := 0
	for _, e := range p.Endpoints {
		n += max(1, len(e.Hosts))
	}
	if len(rows) != n+1 {
		t.Fatalf("%d rows, want a header and %d:\n%s", len(rows), n, out)
	}
	want := [][]string{
		{"profile", "protocol", "transport", "port", "port_note", "kind", "destination", "purpose", "optional"},
		{"azure-sphere", "MQTT over TCP", "tcp", "8883", "", "hosts", "global.azure-devices-provisioning.net", "Device provisioning and communication with Azure IoT Hub", "false"},
		{"azure-sphere", "MQTT over TCP", "tcp", "443", "WebSocket", "hosts", "global.azure-devices-provisioning.net", "Device provisioning and communication with Azure IoT Hub", "false"},
	}
	if diff := cmp.Diff(want, rows[:3]); diff != "" {
		t.Errorf("first rows (-want +got):\n%s", diff)
	}
	dns := []string{"azure-sphere", "UDP", "udp", "53", "", "dns-servers", "", "Communication with domain name servers (DNS)", "false"}
	ntp := []string{"azure-sphere", "UDP", "udp", "123", "", "hosts", "time.sphere.azure.net", "Communication with NTP server", "true"}
	if diff := cmp.Diff(dns, rows[len(rows)-3]); diff != "" {
		t.Errorf("DNS row (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ntp, rows[len(rows)-1]); diff != "" {
		t.Errorf("last row (-want +got):\n%s", diff)
	}
}

func TestEndpointsConfig(t *testing.T) {
	t.Parallel()
	out, err := runEndpoints(t, "--config", "../../examples/pinhole.yaml", "--format", "markdown")
	if err != nil {
		t.Fatal(err)
	}
	want, err := runEndpoints(t, "--format", "markdown")
	if err != nil {
		t.Fatal(err)
	}
	if out != want {
		t.Errorf("--config examples/pinhole.yaml differs from the azure-sphere profile:\n%s", out)
	}
}

func TestEndpointsProfiles(t *testing.T) {
	t.Parallel()
	out, err := runEndpoints(t, "profiles")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"azure-sphere\n", "\nazure-iot-hub\n", "--hub: the IoT hub's name", "(required)", "--ntp-server: time servers", "(default pool.ntp.org)", "\nminimal\n", "--connectivity-url: "} {
		if !strings.Contains(out, want) {
			t.Errorf("profiles output lacks %q:\n%s", want, out)
		}
	}
}

func TestEndpointsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--profile", "azure-iot-hub"}, "--hub: required"},
		{[]string{"--profile", "azure-iot-hub", "--hub", "a_b"}, "--hub: hub name"},
		{[]string{"--hub", "contoso"}, "--hub: profile azure-sphere takes no parameters"},
		{[]string{"--profile", "minimal", "--ntp-server", "bad host"}, "--ntp-server: host"},
		{[]string{"--profile", "minimal", "--connectivity-url", "ftp://x.example/"}, "--connectivity-url: url"},
		{[]string{"--profile", "nope"}, `unknown profile "nope"`},
		{[]string{"--format", "yaml"}, `--format "yaml": choose one of table, json, csv, markdown`},
		{[]string{"--config", "x.yaml", "--profile", "minimal"}, "--profile and --config cannot be used together"},
		{[]string{"--config", "/nonexistent/pinhole.yaml"}, "read config"},
		{[]string{"extra"}, "unknown command"},
	}
	for _, tt := range tests {
		_, err := runEndpoints(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("endpoints %v: error = %v, want %q", tt.args, err, tt.want)
		}
	}
}
