package lab

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

func mustPattern(t *testing.T, s string) hostname.Pattern {
	t.Helper()
	p, err := hostname.ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostAddrs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		i      int
		v4, v6 string
	}{
		{0, "198.18.1.1", "2001:db8:1::1"},
		{249, "198.18.1.250", "2001:db8:1::fa"},
		{250, "198.18.2.1", "2001:db8:1::fb"},
		{1000, "198.18.5.1", "2001:db8:1::3e9"},
	}
	for _, tt := range tests {
		v4, v6 := hostAddrs(tt.i)
		if v4.String() != tt.v4 || v6.String() != tt.v6 {
			t.Errorf("hostAddrs(%d) = %s %s, want %s %s", tt.i, v4, v6, tt.v4, tt.v6)
		}
		if !PublicV4.Contains(v4) || !PublicV6.Contains(v6) {
			t.Errorf("hostAddrs(%d) = %s %s: outside the lab's public prefixes", tt.i, v4, v6)
		}
	}
}

func TestBuildZone(t *testing.T) {
	t.Parallel()
	prof, err := catalog.Load("azure-sphere", nil)
	if err != nil {
		t.Fatal(err)
	}
	pats := []hostname.Pattern{
		mustPattern(t, "api.contoso.example"),     // a sample name: no duplicate
		mustPattern(t, "*.contoso-cdn.example"),   // covered by the sample names
		mustPattern(t, "*.fabrikam.example"),      // a domain of its own
		mustPattern(t, "telemetry.fabrikam.test"), // an exact name
		mustPattern(t, "_http._tcp.local"),        // DNS-SD: not served
	}
	zone, err := BuildZone(prof, pats)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	seen := map[netip.Addr]string{}
	for _, h := range zone {
		names = append(names, h.Name)
		for _, a := range []netip.Addr{h.V4, h.V6} {
			if prev, dup := seen[a]; dup {
				t.Errorf("%s and %s share address %s", prev, h.Name, a)
			}
			seen[a] = h.Name
		}
	}
	// The sample names come first, in a fixed order, so their addresses
	// are stable.
	if got := names[:len(sampleHosts)]; !slices.Equal(got, []string{
		"contoso-hub.azure-devices.net", "api.contoso.example", "img.contoso-cdn.example",
		"contoso-cdn.example", "status.contoso.example", "prod.update.sphere.azure.net",
	}) {
		t.Errorf("first names = %q", got)
	}
	if zone[1].V4.String() != "198.18.1.2" {
		t.Errorf("api.contoso.example = %s, want 198.18.1.2", zone[1].V4)
	}
	for _, want := range []string{
		"www.msftconnecttest.com", "global.azure-devices-provisioning.net", "prod.time.sphere.azure.net",
		"sphere.sb.dl.delivery.mp.microsoft.com", "*.fabrikam.example", "telemetry.fabrikam.test",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("zone lacks %s", want)
		}
	}
	for _, bad := range []string{"*.contoso-cdn.example", "_http._tcp.local"} {
		if slices.Contains(names, bad) {
			t.Errorf("zone has %s", bad)
		}
	}
	if n := strings.Count(strings.Join(names, " "), "api.contoso.example"); n != 1 {
		t.Errorf("api.contoso.example is in the zone %d times", n)
	}

	for _, tt := range []struct{ name, want string }{
		{"API.contoso.example.", "api.contoso.example"},
		{"a.b.fabrikam.example", "*.fabrikam.example"},
		{"fabrikam.example", "*.fabrikam.example"},
	} {
		h, ok := Lookup(zone, tt.name)
		if !ok || h.Name != tt.want {
			t.Errorf("Lookup(%s) = %q, %v; want %s", tt.name, h.Name, ok, tt.want)
		}
	}
	if _, ok := Lookup(zone, "nothere.example"); ok {
		t.Error("Lookup(nothere.example) found something")
	}
	zn := ZoneNames(zone)
	for _, want := range []string{"fabrikam.example", "*.fabrikam.example", "contoso.edgekey.example", "img.contoso-cdn.example"} {
		if !slices.Contains(zn, want) {
			t.Errorf("ZoneNames lacks %s", want)
		}
	}
}

func TestRenderDnsmasq(t *testing.T) {
	t.Parallel()
	zone := []Host{
		{Name: "a.example", Chain: []string{"b.example", "c.example"}, V4: netip.MustParseAddr("198.18.1.1"), V6: netip.MustParseAddr("2001:db8:1::1"), Note: "chain"},
		{Name: "*.wild.example", V4: netip.MustParseAddr("198.18.1.2"), V6: netip.MustParseAddr("2001:db8:1::2"), Note: "wild"},
		{Name: "d.example", V4: netip.MustParseAddr("198.18.1.3"), V6: netip.MustParseAddr("2001:db8:1::3"), Note: "plain"},
	}
	got := RenderDnsmasq(zone)
	var records []string
	for _, l := range strings.Split(got, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			records = append(records, l)
		}
	}
	want := []string{
		"no-resolv", "no-hosts", "no-poll", "bind-dynamic",
		"listen-address=198.18.0.53", "listen-address=2001:db8::53",
		"local-ttl=300", "log-queries", "log-facility=-", "local=/#/",
		"cname=a.example,b.example", "cname=b.example,c.example", "host-record=c.example,198.18.1.1,2001:db8:1::1",
		"address=/wild.example/198.18.1.2", "address=/wild.example/2001:db8:1::2",
		"host-record=d.example,198.18.1.3,2001:db8:1::3",
	}
	if diff := cmp.Diff(want, records); diff != "" {
		t.Errorf("dnsmasq.conf (-want +got):\n%s", diff)
	}
	// dnsmasq itself must accept the file, if it is installed.
	bin, err := FindTool("dnsmasq")
	if err != nil {
		t.Log("dnsmasq not installed: syntax not checked")
		return
	}
	path := filepath.Join(t.TempDir(), "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--test", "--conf-file="+path).CombinedOutput(); err != nil {
		t.Errorf("dnsmasq --test: %v\n%s", err, out)
	}
}

func TestRenderMosquitto(t *testing.T) {
	t.Parallel()
	got := RenderMosquitto("/run/l/ca.crt", "/run/l/server.crt", "/run/l/server.key", "mosquitto")
	for _, want := range []string{"\nlistener 8883\n", "\ncafile /run/l/ca.crt\n", "\ncertfile /run/l/server.crt\n",
		"\nkeyfile /run/l/server.key\n", "\nallow_anonymous true\n", "\nuser mosquitto\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("mosquitto.conf lacks %q:\n%s", want, got)
		}
	}
	// Every option after listener belongs to it; none may come twice.
	seen := map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || f[0] == "log_type" {
			continue
		}
		if seen[f[0]] {
			t.Errorf("option %s twice", f[0])
		}
		seen[f[0]] = true
	}
}
