package firewall

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/policy"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testPolicy builds a small valid policy; edit mutates it before Finish.
func testPolicy(edit func(p *policy.Policy)) *policy.Policy {
	p := &policy.Policy{
		Mode:       policy.ModeEnforce,
		Unmanaged:  policy.UnmanagedDeny,
		SystemMark: policy.DefaultSystemMark,
		NFLOGGroup: 100,
		System: &policy.App{Name: policy.SystemName, Identity: policy.Identity{Kind: policy.ByMark, Mark: policy.DefaultSystemMark},
			Addrs: []policy.AddrRule{{Addr: addr("198.18.0.53"), Ports: policy.BothProtocols(53)}}},
		Apps: []*policy.App{
			{Name: "weather", Identity: policy.Identity{Kind: policy.ByUID, UID: 1001}, DNSPort: 5300,
				Addrs:          []policy.AddrRule{{Addr: addr("198.18.0.10")}, {Addr: addr("255.255.255.255")}},
				TCPServerPorts: []uint16{8080}},
			{Name: "clock", Identity: policy.Identity{Kind: policy.ByCgroup, Cgroup: "pinhole/clock"}, DNSPort: 5301,
				Addrs: []policy.AddrRule{{Addr: addr("2001:db8::10"), Ports: policy.Ports{{Proto: policy.TCP, Port: 443}}}}},
		},
	}
	if edit != nil {
		edit(p)
	}
	return policy.Finish(p)
}

func fixedCgroupID(id uint64) func(string) (uint64, error) {
	return func(string) (uint64, error) { return id, nil }
}

func TestNewModel(t *testing.T) {
	t.Parallel()
	m, err := newModel(testPolicy(nil), fixedCgroupID(77), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, id := range m.idents {
		got = append(got, fmt.Sprintf("%s %v level=%d cg=%d", id.name, id.kind, id.level, id.cgID))
	}
	want := []string{"system mark level=0 cg=0", "weather uid level=0 cg=0", "clock cgroup level=2 cg=77"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
	wantLits := []string{
		"system 198.18.0.53 tcp/53", "system 198.18.0.53 udp/53",
		"weather 198.18.0.10", "weather 255.255.255.255", "clock 2001:db8::10 tcp/443",
	}
	var lits []string
	for _, e := range m.literals {
		lits = append(lits, e.String())
	}
	if diff := cmp.Diff(wantLits, lits); diff != "" {
		t.Errorf("literals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{2}, m.levels); diff != "" {
		t.Errorf("levels (-want +got):\n%s", diff)
	}
	if !m.uidSrv || m.cgSrv || !m.uidApps {
		t.Errorf("uidSrv=%v cgSrv=%v uidApps=%v, want true false true", m.uidSrv, m.cgSrv, m.uidApps)
	}
	if diff := cmp.Diff([]uint16{5300, 5301}, m.stubPorts); diff != "" {
		t.Errorf("stub ports (-want +got):\n%s", diff)
	}
}

func TestNewModelMissingCgroup(t *testing.T) {
	t.Parallel()
	notYet := func(string) (uint64, error) { return 0, fmt.Errorf("stat: %w", fs.ErrNotExist) }
	m, err := newModel(testPolicy(nil), notYet, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if id := m.byName["clock"]; id.cgID != 0 {
		t.Errorf("clock cgroup id = %d, want 0 (unresolved)", id.cgID)
	}
	broken := func(string) (uint64, error) { return 0, errors.New("permission denied") }
	if _, err := newModel(testPolicy(nil), broken, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("newModel with a failing cgroup lookup: no error")
	}
}

func TestNewModelRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(p *policy.Policy)
		want string
	}{
		{"mode", func(p *policy.Policy) { p.Mode = "permissive" }, "mode"},
		{"unmanaged", func(p *policy.Policy) { p.Unmanaged = "" }, "unmanaged"},
		{"reserved name", func(p *policy.Policy) { p.Apps[0].Name = "unmanaged" }, "reserved"},
		{"bad name", func(p *policy.Policy) { p.Apps[0].Name = "Weather!" }, "app name"},
		{"duplicate name", func(p *policy.Policy) { p.Apps[1].Name = "weather" }, "twice"},
		{"same uid", func(p *policy.Policy) {
			p.Apps[1].Identity = policy.Identity{Kind: policy.ByUID, UID: 1001}
		}, "both have uid"},
		{"same stub port", func(p *policy.Policy) { p.Apps[1].DNSPort = 5300 }, "stub port"},
		{"app by mark", func(p *policy.Policy) {
			p.Apps[0].Identity = policy.Identity{Kind: policy.ByMark, Mark: 5}
		}, "only the system"},
		{"no mark", func(p *policy.Policy) { p.SystemMark = 0 }, "mark"},
		{"port 0", func(p *policy.Policy) { p.Apps[0].UDPServerPorts = []uint16{0} }, "server port 0"},
		{"port without proto", func(p *policy.Policy) {
			p.Apps[0].Addrs = []policy.AddrRule{{Addr: addr("198.18.0.1"), Ports: policy.Ports{{Port: 80}}}}
		}, "tcp or udp"},
		{"no address", func(p *policy.Policy) { p.Apps[0].Addrs = []policy.AddrRule{{}} }, "no address"},
		{"service link", func(p *policy.Policy) {
			p.ServiceLink = policy.ServiceLink{Enabled: true, Interface: "an-interface-name-too-long"}
		}, "service link"},
		{"empty cgroup", func(p *policy.Policy) { p.Apps[1].Identity.Cgroup = "" }, "empty cgroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := newModel(testPolicy(tt.edit), fixedCgroupID(1), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			t.Logf("err: %v", err)
		})
	}
	if _, err := newModel(nil, fixedCgroupID(1), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("nil policy: no error")
	}
}

func TestElementNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   Element
		want Element
		ok   bool
	}{
		{Element{App: "a", Addr: addr("::ffff:198.18.0.1")}, Element{App: "a", Addr: addr("198.18.0.1")}, true},
		{Element{App: "a", Addr: addr("198.18.0.1"), Timeout: 1500 * time.Microsecond},
			Element{App: "a", Addr: addr("198.18.0.1"), Timeout: 2 * time.Millisecond}, true},
		{Element{App: "a", Addr: addr("198.18.0.1"), Timeout: time.Nanosecond},
			Element{App: "a", Addr: addr("198.18.0.1"), Timeout: time.Millisecond}, true},
		{Element{App: "a", Addr: addr("2001:db8::1"), Proto: policy.UDP, Port: 53},
			Element{App: "a", Addr: addr("2001:db8::1"), Proto: policy.UDP, Port: 53}, true},
		{in: Element{App: "a"}},
		{in: Element{App: "a", Addr: addr("fe80::1%eth0")}},
		{in: Element{App: "a", Addr: addr("198.18.0.1"), Proto: policy.TCP}},
		{in: Element{App: "a", Addr: addr("198.18.0.1"), Port: 80}},
		{in: Element{App: "a", Addr: addr("198.18.0.1"), Proto: 1, Port: 80}},
		{in: Element{App: "a", Addr: addr("198.18.0.1"), Timeout: -time.Second}},
		{in: Element{App: "a", Addr: addr("198.18.0.1"), Timeout: 2 * maxTimeout}},
	}
	for _, tt := range tests {
		got, err := tt.in.normalize()
		if (err == nil) != tt.ok {
			t.Errorf("%v.normalize() err = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok {
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("%v.normalize() (-want +got):\n%s", tt.in, diff)
			}
		}
	}
}

func TestLearnedElements(t *testing.T) {
	t.Parallel()
	m, err := newModel(testPolicy(nil), fixedCgroupID(1), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	in := []Element{
		{App: "weather", Addr: addr("198.18.0.10"), Timeout: time.Minute}, // literal: dropped
		{App: "weather", Addr: addr("198.18.0.11"), Timeout: time.Minute},
		{App: "weather", Addr: addr("198.18.0.11"), Timeout: time.Hour}, // longer wins
		{App: "gone", Addr: addr("198.18.0.12"), Timeout: time.Minute},  // app removed: dropped
		{App: "clock", Addr: addr("198.18.0.11"), Timeout: time.Second},
	}
	got, dropped, err := m.learnedElements(in)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, e := range got {
		s = append(s, e.String())
	}
	want := []string{"weather 198.18.0.11 timeout 1h0m0s", "clock 198.18.0.11 timeout 1s"}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("learned (-want +got):\n%s", diff)
	}
	if dropped != 1 {
		t.Errorf("dropped = %d, want 1", dropped)
	}
	if _, _, err := m.learnedElements([]Element{{App: "weather"}}); err == nil {
		t.Error("invalid element: no error")
	}
}
