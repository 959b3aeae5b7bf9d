package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// wantVerdicts is what the demo's attempts must come to with the sample
// config; the root test checks the real outcomes against it too.
var wantVerdicts = map[string]Verdict{
	"telemetry/hub":            Allowed,
	"telemetry/dps":            Allowed,
	"telemetry/conncheck":      Denied,
	"webfetch/api":             Allowed,
	"webfetch/api-v6":          Allowed,
	"webfetch/cdn":             Allowed,
	"webfetch/cdn-apex":        Denied,
	"webfetch/lan":             Allowed,
	"webfetch/in-8080":         Allowed,
	"webfetch/in-8081":         Denied,
	"intruder/status":          Allowed,
	"intruder/api":             Denied,
	"intruder/api-addr":        Denied,
	"intruder/api-addr-v6":     Denied,
	"intruder/dns-8.8.8.8":     Allowed,
	"intruder/dns-8.8.8.8-tcp": Denied,
	"intruder/ntp":             Denied,
	"intruder/in-7000":         Allowed,
	"unmanaged/conncheck":      Denied,
}

// samplePlan builds the parts of a plan the demo needs from the sample
// config, without building a lab.
func samplePlan(t *testing.T) (*Plan, *policy.Policy) {
	t.Helper()
	path, err := copySamples(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, pol, data, err := LoadSource(path)
	if err != nil {
		t.Fatal(err)
	}
	_, apps, err := DeviceConfig(data, cfg, testLayout, allocUIDs(len(cfg.Apps), func(uint32) bool { return false }))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := cfg.Profile.Load()
	if err != nil {
		t.Fatal(err)
	}
	zone, err := BuildZone(prof, appPatterns(pol))
	if err != nil {
		t.Fatal(err)
	}
	return &Plan{Name: testLayout.Name, Apps: apps, Zone: zone}, pol
}

func TestSampleAttempts(t *testing.T) {
	t.Parallel()
	p, pol := samplePlan(t)
	attempts, err := SampleAttempts(p, pol)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Verdict{}
	for _, a := range attempts {
		if _, dup := got[a.ID]; dup {
			t.Errorf("attempt %s twice", a.ID)
		}
		got[a.ID] = a.Expect
		if a.Why == "" || a.Label == "" {
			t.Errorf("attempt %s: no label or reason", a.ID)
		}
		if (a.Probe == nil) == (a.Inbound == nil) {
			t.Errorf("attempt %s: wants exactly one of Probe and Inbound", a.ID)
		}
		if a.Probe != nil && a.Probe.Name == "" && !a.Probe.Addr.IsValid() {
			t.Errorf("attempt %s: probe without a name or an address", a.ID)
		}
	}
	if diff := cmp.Diff(wantVerdicts, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	why := map[string]string{}
	for _, a := range attempts {
		why[a.ID] = a.Why
	}
	for id, want := range map[string]string{
		"telemetry/hub":       "telemetry's manifest lists contoso-hub.azure-devices.net",
		"telemetry/conncheck": "only pinholed itself may reach it",
		"webfetch/cdn":        "img.contoso-cdn.example matches *.contoso-cdn.example in webfetch's manifest",
		"webfetch/cdn-apex":   "webfetch's manifest does not list contoso-cdn.example",
		"webfetch/lan":        "lists the address 192.168.1.20",
		"webfetch/in-8081":    "lists only TCP server ports 8080",
		"intruder/api-addr":   "intruder never looked up api.contoso.example",
		"unmanaged/conncheck": "unmanaged: deny",
	} {
		if !strings.Contains(why[id], want) {
			t.Errorf("%s: why = %q, want it to say %q", id, why[id], want)
		}
	}

	// Without the sample apps there is no demo.
	other := *p
	other.Apps = p.Apps[:1]
	if _, err := SampleAttempts(&other, policy.Finish(&policy.Policy{Apps: pol.Apps[:1]})); err == nil {
		t.Error("attempts for a config without the sample apps: no error")
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	named := Attempt{ID: "x", App: "a", Probe: &Probe{Name: "h.example", Port: 443, Talk: "https", Server: netip.MustParseAddrPort("198.18.0.53:53")}}
	dnsOnly := Attempt{ID: "d", App: "a", Probe: &Probe{Name: "h.example", Server: netip.MustParseAddrPort("8.8.8.8:53")}}
	byAddr := Attempt{ID: "y", App: "a", Probe: &Probe{Addr: netip.MustParseAddr("198.18.1.2"), Port: 123, Proto: "udp", Talk: "ntp"}}
	okDNS := &DNSResult{Rcode: "NOERROR", Addrs: []netip.Addr{netip.MustParseAddr("198.18.1.2")}, Chain: []string{"c.example"}}
	tests := []struct {
		name    string
		a       Attempt
		r       ProbeResult
		want    Verdict
		summary string
	}{
		{"allowed", named, ProbeResult{DNS: okDNS, Conn: &StepResult{OK: true}, Talk: &StepResult{OK: true, Detail: "HTTP 200"}}, Allowed, "answered"},
		{"nxdomain from pinhole", named, ProbeResult{DNS: &DNSResult{Rcode: "NXDOMAIN", EDE: "pinhole: app a may not resolve h.example"}}, Denied, "DNS answered NXDOMAIN"},
		{"nxdomain from elsewhere", named, ProbeResult{DNS: &DNSResult{Rcode: "NXDOMAIN"}}, Failed, "not from pinhole"},
		{"servfail", named, ProbeResult{DNS: &DNSResult{Rcode: "SERVFAIL"}}, Failed, "SERVFAIL"},
		{"query rejected", named, ProbeResult{DNS: &DNSResult{Err: "write: operation not permitted", Errno: "EPERM"}}, Denied, "the DNS query was rejected"},
		{"query lost", named, ProbeResult{DNS: &DNSResult{Err: "i/o timeout", Errno: "timeout"}}, Denied, "the DNS query got no answer"},
		{"no address", named, ProbeResult{DNS: &DNSResult{Rcode: "NOERROR"}}, Failed, "without an address"},
		{"refused", named, ProbeResult{DNS: okDNS, Conn: &StepResult{Errno: "ECONNREFUSED", Err: "connection refused"}}, Denied, "the connection was refused"},
		{"odd error", named, ProbeResult{DNS: okDNS, Conn: &StepResult{Errno: "", Err: "something"}}, Failed, "the connection failed"},
		{"tls broken", named, ProbeResult{DNS: okDNS, Conn: &StepResult{OK: true}, Talk: &StepResult{Err: "TLS handshake: bad certificate"}}, Failed, "connected, but TLS handshake"},
		{"dns elsewhere answered", dnsOnly, ProbeResult{DNS: okDNS}, Allowed, "answered by a's pinhole stub anyway"},
		{"dns elsewhere nxdomain", dnsOnly, ProbeResult{DNS: &DNSResult{Rcode: "NXDOMAIN", EDE: "x"}}, Denied, "its pinhole stub answered NXDOMAIN anyway"},
		{"udp rejected", byAddr, ProbeResult{Conn: &StepResult{OK: true}, Talk: &StepResult{Errno: "EPERM", Err: "operation not permitted"}}, Denied, "the datagram was rejected"},
		{"udp unanswered", byAddr, ProbeResult{Conn: &StepResult{OK: true}, Talk: &StepResult{Errno: "timeout"}}, Denied, "the datagram got no answer"},
	}
	for _, tt := range tests {
		o := Judge(tt.a, tt.r)
		if o.Got != tt.want || !strings.Contains(o.Summary, tt.summary) {
			t.Errorf("%s: %s %q, want %s %q", tt.name, o.Got, o.Summary, tt.want, tt.summary)
		}
		if len(o.Evidence) == 0 {
			t.Errorf("%s: no evidence", tt.name)
		}
	}
}

func TestJudgeInbound(t *testing.T) {
	t.Parallel()
	a := Attempt{ID: "in", App: "a", Inbound: &Inbound{Proto: "tcp", Port: 8080}}
	for _, tt := range []struct {
		r    StepResult
		want Verdict
	}{
		{StepResult{OK: true, Detail: "hello"}, Allowed},
		{StepResult{Errno: "timeout"}, Denied},
		{StepResult{Errno: "ECONNREFUSED", Err: "refused"}, Failed},
	} {
		if o := JudgeInbound(a, tt.r); o.Got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.r, o.Got, tt.want)
		}
	}
}

func TestMs(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                       "0.0 ms",
		150 * time.Microsecond:  "0.1 ms",
		9940 * time.Microsecond: "9.9 ms",
		12 * time.Millisecond:   "12 ms",
		time.Second:             "1000 ms",
	} {
		if got := ms(d); got != want {
			t.Errorf("ms(%v) = %q, want %q", d, got, want)
		}
	}
}
