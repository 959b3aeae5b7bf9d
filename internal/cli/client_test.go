package cli

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/logprefix"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.Local)

func TestRoughDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Second:              "42s",
		3*time.Minute + 5*time.Second: "3m05s",
		5*time.Hour + 7*time.Minute:   "5h07m",
		50 * time.Hour:                "2d02h",
		1500 * time.Millisecond:       "2s",
	} {
		if got := roughDuration(d); got != want {
			t.Errorf("roughDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ago(now.Add(-90*time.Second), now); got != "1m30s ago" {
		t.Errorf("ago = %q", got)
	}
	if got := when(now.Add(-48*time.Hour), now); got != "2026-11-28 12:00:00" {
		t.Errorf("when (other day) = %q", got)
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv("PINHOLE_SOCKET", "/tmp/x.sock")
	if got := socketPath(""); got != "/tmp/x.sock" {
		t.Errorf("from env: %q", got)
	}
	if got := socketPath("/run/y.sock"); got != "/run/y.sock" {
		t.Errorf("flag: %q", got)
	}
	f := &clientFlags{device: "192.168.35.2"}
	if got := f.client().Where(); got != "192.168.35.2:80" {
		t.Errorf("--device without port: %q", got)
	}
}

func TestWriteApps(t *testing.T) {
	uid := uint32(1001)
	apps := []api.AppSummary{
		{Name: "telemetry", Identity: api.Identity{Kind: "uid", UID: &uid}, Hosts: 2, Addresses: 1,
			LearnedHosts: []string{"a.example", "b.example", "c.example", "d.example"}, Packets: api.Packets{Allowed: 12, Denied: 3}},
		{Name: "webfetch", Identity: api.Identity{Kind: "cgroup", Cgroup: "pinhole-apps.slice/webfetch.service"}},
	}
	var b bytes.Buffer
	if err := writeApps(&b, apps); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"APP", "LEARNED HOSTS",
		"telemetry  uid 1001", "a.example, b.example, c.example (+1 more)",
		"cgroup pinhole-apps.slice/webfetch.service (absent)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apps table lacks %q", want)
		}
	}
}

func TestWriteApp(t *testing.T) {
	a := api.App{
		AppSummary: api.AppSummary{Name: "telemetry", Identity: api.Identity{Kind: "cgroup", Cgroup: "x.slice/t.service", CgroupID: 7}, DNSPort: 5300, TCPServerPorts: []uint16{8080}},
		Component:  &api.ManifestInfo{Name: "Telemetry", ComponentID: "3f1c"},
		Rules:      []api.Rule{{Host: "hub.example", Ports: []string{"tcp/8883"}, Source: "m.json: AllowedConnections[0]"}, {Address: "192.0.2.1", Source: "m.json: AllowedConnections[1]"}},
		Learned: []learned.NameEntry{{Name: "hub.example", Addrs: []learned.AddrEntry{
			{Addr: netip.MustParseAddr("198.18.0.9"), Expires: now.Add(5 * time.Minute)},
			{Addr: netip.MustParseAddr("198.18.0.2"), Expires: now.Add(time.Minute)},
		}}},
		DNSQueries: map[string]uint64{"allowed": 4, "blocked": 1, "invalid": 0},
	}
	var b bytes.Buffer
	if err := writeApp(&b, a, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		`telemetry (manifest name "Telemetry", component 3f1c)`, "tcp server ports  8080", "udp server ports  none",
		"4 allowed, 1 blocked", "hub.example  tcp/8883", "192.0.2.1    any",
		"hub.example   198.18.0.2  in 1m00s (12:01:00)", "198.18.0.9  in 5m00s (12:05:00)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("app output lacks %q", want)
		}
	}
}

func TestWriteAudit(t *testing.T) {
	recs := []audit.Record{
		{Last: now, Count: 3, App: "beta", Verdict: logprefix.Deny, Direction: logprefix.Out, Proto: audit.ProtoTCP,
			Dst: netip.MustParseAddr("198.18.1.4"), DstPort: 80, Hosts: []string{"beta.test"}},
		{Last: now, Count: 1, App: "beta", Verdict: logprefix.Deny, Direction: logprefix.Out, Proto: audit.ProtoTCP,
			Dst: netip.MustParseAddr("198.18.1.2"), DstPort: 80, LearnedBy: []string{"alpha"}},
		{Last: now, Count: 1, App: "unmanaged", Verdict: logprefix.Audit, Direction: logprefix.In, Proto: audit.ProtoICMP,
			Src: netip.MustParseAddr("192.0.2.7"), ICMP: &audit.ICMP{Type: 8}},
	}
	var b bytes.Buffer
	if err := writeAudit(&b, recs, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{"198.18.1.4:80", "beta.test", "(not looked up by this app; learned by alpha)", "192.0.2.7 (type 8 code 0)", "audit"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit table lacks %q", want)
		}
	}
	if line := auditLine(recs[0], now); !strings.HasPrefix(line, "12:00:00  beta") || !strings.HasSuffix(line, "beta.test") {
		t.Errorf("follow line %q", line)
	}
	b.Reset()
	writeAudit(&b, nil, now)
	if !strings.Contains(b.String(), "no denied connections") {
		t.Errorf("empty audit: %q", b.String())
	}
}

func TestWriteStatusAndReload(t *testing.T) {
	st := api.Status{Version: "v1", Started: now.Add(-time.Hour), Uptime: 3600, Config: "/etc/pinhole/pinhole.yaml", Mode: "enforce", Unmanaged: "deny",
		Apps: 2, NetworkTimeSync: "incomplete", Proxy: "disabled",
		LastReload: &api.ReloadOutcome{At: now, Error: "manifests: a.json:1:1: bad\nmore"}, Problems: []string{"dns stubs: port in use"}}
	var b bytes.Buffer
	if err := writeStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{"up 1h00m", "FAILED at 12:00:00, the previous policy still runs: manifests: a.json:1:1: bad ...", "problems     dns stubs: port in use"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	b.Reset()
	writeReload(&b, api.ReloadResult{Apps: 3, Added: []string{"c"}, Changed: []string{"a"}, KeptLearned: 7, Took: 2.5, RestartRequired: []string{"api.socket"}})
	want := "reloaded: 3 apps (added c, changed a); 7 learned addresses kept; took 2.5 ms\nrestart pinholed for these changes to take effect: api.socket\n"
	if b.String() != want {
		t.Errorf("reload output %q, want %q", b.String(), want)
	}
}
