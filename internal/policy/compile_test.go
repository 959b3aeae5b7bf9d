package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/manifest"
)

var testUpstream = netip.MustParseAddrPort("192.0.2.53:53")

func testEnv() Env {
	return Env{
		LookupUser: func(name string) (uint32, error) {
			if name == "intruder" {
				return 1003, nil
			}
			return 0, fmt.Errorf("unknown user %q", name)
		},
		ReadResolvConf: func(string) ([]netip.AddrPort, error) {
			return []netip.AddrPort{testUpstream}, nil
		},
	}
}

func loadExample(t *testing.T) (*config.Config, map[string]*manifest.Manifest) {
	t.Helper()
	cfg, err := config.Load("../../examples/pinhole.yaml")
	if err != nil {
		t.Fatalf("load example config: %v", err)
	}
	ms, _, err := LoadManifests(cfg)
	if err != nil {
		t.Fatalf("load example manifests: %v", err)
	}
	return cfg, ms
}

func TestCompileExample(t *testing.T) {
	cfg, ms := loadExample(t)
	p, err := CompileWith(cfg, ms, testEnv())
	if err != nil {
		t.Fatalf("CompileWith(example) = %v", err)
	}
	type appView struct {
		Name     string
		Identity string
		Hosts    []string
		Addrs    []string
		TCP, UDP []uint16
		DNSPort  uint16
	}
	view := func(a *App) appView {
		v := appView{Name: a.Name, Identity: a.Identity.String(), TCP: a.TCPServerPorts, UDP: a.UDPServerPorts, DNSPort: a.DNSPort}
		for _, h := range a.Hosts {
			v.Hosts = append(v.Hosts, fmt.Sprintf("%s %v", h.Pattern, h.Ports))
		}
		for _, r := range a.Addrs {
			v.Addrs = append(v.Addrs, fmt.Sprintf("%s %v", r.Addr, r.Ports))
		}
		return v
	}
	var got []appView
	for _, a := range p.Apps {
		got = append(got, view(a))
	}
	want := []appView{
		{Name: "telemetry", Identity: "uid 1001", DNSPort: 5300,
			Hosts: []string{"global.azure-devices-provisioning.net []", "contoso-hub.azure-devices.net []"}},
		{Name: "webfetch", Identity: "cgroup system.slice/webfetch.service", DNSPort: 5301,
			Hosts: []string{"api.contoso.example []", "*.contoso-cdn.example []"},
			Addrs: []string{"192.168.1.20 []"}, TCP: []uint16{8080}},
		{Name: "intruder", Identity: "uid 1003 (intruder)", DNSPort: 5302,
			Hosts: []string{"status.contoso.example []"}, UDP: []uint16{7000}},
	}
	// The view prints "any port" (nil Ports) as []; check it really is nil.
	for _, a := range p.Apps {
		for _, h := range a.Hosts {
			if !h.Ports.Any() {
				t.Errorf("app %s host %s: ports %v, want any", a.Name, h.Pattern, h.Ports)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("compiled apps (-want +got):\n%s", diff)
	}

	sys := p.System
	if sys.Identity.Kind != ByMark || sys.Identity.Mark != DefaultSystemMark {
		t.Errorf("system identity = %v, want mark %#x", sys.Identity, DefaultSystemMark)
	}
	sysWant := map[string]string{
		"global.azure-devices-provisioning.net": "[tcp/443 tcp/8883]",
		"www.msftconnecttest.com":               "[tcp/80]",
		"prod.time.sphere.azure.net":            "[udp/123]",
		"prodptimg.blob.core.windows.net":       "[tcp/443]",
	}
	for name, ports := range sysWant {
		m, ok := sys.MatchName(name)
		if !ok {
			t.Errorf("system may not reach %s", name)
			continue
		}
		if got := fmt.Sprint(m.Ports); got != ports {
			t.Errorf("system ports for %s = %s, want %s", name, got, ports)
		}
	}
	if diff := cmp.Diff([]string{"192.0.2.53 [tcp/53 udp/53]"}, view(sys).Addrs); diff != "" {
		t.Errorf("system addresses (-want +got):\n%s", diff)
	}
	if p.App("webfetch") != p.Apps[1] || p.App(SystemName) != sys || p.App("nope") != nil {
		t.Error("Policy.App does not find identities by name")
	}
}

// TestMatchName pins how names match host patterns: exact, case, trailing
// dot, IDN, wildcard depth, the apex, look-alike domains and literals.
func TestMatchName(t *testing.T) {
	entries := []string{
		"Example.COM", "api.example.net.", "Bücher.example", "*.cdn.example.org",
		"_http._tcp.home", "192.0.2.7", "2001:db8::7", "mqtt.example.io:8883",
	}
	a := &App{Name: "a"}
	for _, e := range entries {
		c, err := manifest.ParseEntry(e)
		if err != nil {
			t.Fatalf("ParseEntry(%q) = %v", e, err)
		}
		var ports Ports
		if c.Port != 0 {
			ports = BothProtocols(c.Port)
		}
		if c.IsAddr() {
			a.Addrs = addAddr(a.Addrs, AddrRule{Addr: c.Addr, Ports: ports})
		} else {
			a.Hosts = addHost(a.Hosts, HostRule{Pattern: c.Pattern, Ports: ports})
		}
	}
	Finish(&Policy{Apps: []*App{a}})
	tests := []struct {
		query string
		want  bool
		ports string
	}{
		{"example.com", true, "[]"},
		{"EXAMPLE.com.", true, "[]"},
		{"www.example.com", false, ""},
		{"evilexample.com", false, ""},
		{"example.com.evil.net", false, ""},
		{"api.example.net", true, "[]"},
		{"xn--bcher-kva.example", true, "[]"},
		{"bücher.example", false, ""}, // wire names are already punycode
		{"cdn.example.org", false, ""},
		{"a.cdn.example.org", true, "[]"},
		{"a.b.c.cdn.example.org", true, "[]"},
		{"acdn.example.org", false, ""},
		{"_http._tcp.home", true, "[]"},
		{"printer._http._tcp.home", true, "[]"},
		{"a.printer._http._tcp.home", false, ""},
		{"mqtt.example.io", true, "[tcp/8883 udp/8883]"},
		{"192.0.2.7", false, ""}, // literals are addresses, not names
		{"2001:db8::7", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		m, ok := a.MatchName(hostname.CanonicalQuery(tt.query))
		if ok != tt.want {
			t.Errorf("MatchName(%q) ok = %v, want %v", tt.query, ok, tt.want)
			continue
		}
		if ok && fmt.Sprint(m.Ports) != tt.ports {
			t.Errorf("MatchName(%q) ports = %v, want %s", tt.query, m.Ports, tt.ports)
		}
		if a.AllowsName(hostname.CanonicalQuery(tt.query)) != tt.want {
			t.Errorf("AllowsName(%q) disagrees with MatchName", tt.query)
		}
	}
	wantAddrs := []string{"192.0.2.7", "2001:db8::7"}
	var gotAddrs []string
	for _, r := range a.Addrs {
		gotAddrs = append(gotAddrs, r.Addr.String())
		if r.Addr.Is4() == r.Addr.Is6() {
			t.Errorf("address %s is neither plain IPv4 nor IPv6", r.Addr)
		}
	}
	if diff := cmp.Diff(wantAddrs, gotAddrs); diff != "" {
		t.Errorf("literal addresses (-want +got):\n%s", diff)
	}
}

func TestMatchNameMergesPorts(t *testing.T) {
	a := &App{Name: "a", Hosts: []HostRule{
		{Pattern: hostname.Pattern{Kind: hostname.Exact, Name: "x.example.com"}, Ports: BothProtocols(443)},
		{Pattern: hostname.Pattern{Kind: hostname.Wildcard, Name: "example.com"}, Ports: BothProtocols(8883)},
		{Pattern: hostname.Pattern{Kind: hostname.Exact, Name: "y.example.com"}, Ports: BothProtocols(80)},
		{Pattern: hostname.Pattern{Kind: hostname.Exact, Name: "y.example.com"}},
	}}
	Finish(&Policy{Apps: []*App{a}})
	m, _ := a.MatchName("x.example.com")
	if got, want := fmt.Sprint(m.Ports), "[tcp/443 udp/443 tcp/8883 udp/8883]"; got != want {
		t.Errorf("ports = %s, want %s", got, want)
	}
	m, _ = a.MatchName("y.example.com")
	if !m.Ports.Any() {
		t.Errorf("a rule with any port must win, got %v", m.Ports)
	}
}

func TestCompileConflicts(t *testing.T) {
	man := func(t *testing.T, tcp, udp string) *manifest.Manifest {
		t.Helper()
		src := fmt.Sprintf(`{"SchemaVersion":1,"Name":"x","ComponentId":"11111111-2222-3333-4444-555555555555",
			"EntryPoint":"/bin/app","CmdArgs":[],"Capabilities":{"AllowedConnections":["example.com"],
			"AllowedTcpServerPorts":[%s],"AllowedUdpServerPorts":[%s]},"ApplicationType":"Default"}`, tcp, udp)
		m, _, err := manifest.Parse("x.json", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		yaml string
		mans map[string][2]string
		want []string // substrings, one per problem
	}{
		{
			name: "same tcp port",
			yaml: "apps:\n- {name: a, manifest: a.json, uid: 1001}\n- {name: b, manifest: b.json, uid: 1002}\n",
			mans: map[string][2]string{"a": {"8080", ""}, "b": {"8080", ""}},
			want: []string{`TCP server port 8080 is claimed by both app "a" and app "b"`},
		},
		{
			name: "same udp port, different tcp",
			yaml: "apps:\n- {name: a, manifest: a.json, uid: 1001}\n- {name: b, manifest: b.json, uid: 1002}\n",
			mans: map[string][2]string{"a": {"80", "1824"}, "b": {"81", "1824"}},
			want: []string{`UDP server port 1824 is claimed by both app "a" and app "b"`},
		},
		{
			name: "same port in tcp and udp is fine",
			yaml: "apps:\n- {name: a, manifest: a.json, uid: 1001}\n- {name: b, manifest: b.json, uid: 1002}\n",
			mans: map[string][2]string{"a": {"1824", ""}, "b": {"", "1824"}},
		},
		{
			name: "user resolves to another app's uid",
			yaml: "apps:\n- {name: a, manifest: a.json, uid: 1003}\n- {name: b, manifest: b.json, user: intruder}\n",
			mans: map[string][2]string{"a": {"", ""}, "b": {"", ""}},
			want: []string{`apps "a" and "b" have the same identity (uid 1003`},
		},
		{
			name: "unknown user",
			yaml: "apps:\n- {name: a, manifest: a.json, user: ghost}\n",
			mans: map[string][2]string{"a": {"", ""}},
			want: []string{`app "a": user "ghost": unknown user`},
		},
		{
			name: "server port in stub range",
			yaml: "dns: {stub_port_base: 6000}\napps:\n- {name: a, manifest: a.json, uid: 1001}\n",
			mans: map[string][2]string{"a": {"6000", ""}},
			want: []string{`TCP server port 6000 lies in the DNS stub ports 6000-6000`},
		},
		{
			name: "every problem reported",
			yaml: "apps:\n- {name: a, manifest: a.json, uid: 1003}\n- {name: b, manifest: b.json, user: intruder}\n- {name: c, manifest: c.json, uid: 1002}\n",
			mans: map[string][2]string{"a": {"1", "2"}, "b": {"", "3"}, "c": {"1", "2"}},
			want: []string{"TCP server port 1", "UDP server port 2", `apps "a" and "b" have the same identity`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("/etc/pinhole/pinhole.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			ms := map[string]*manifest.Manifest{}
			for name, ports := range tt.mans {
				ms[name] = man(t, ports[0], ports[1])
			}
			p, err := CompileWith(cfg, ms, testEnv())
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CompileWith = %v, want success", err)
				}
				return
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("CompileWith error = %v, want *Error", err)
			}
			if p != nil {
				t.Error("a failed compile returned a Policy")
			}
			if len(perr.Problems) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(perr.Problems), len(tt.want), strings.Join(perr.Problems, "\n"))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestCompileSystemTimeChoices(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		ntp      []string // names the system may reach on udp/123
		notNTP   []string
		ntpAddrs []string
	}{
		{name: "default", yaml: "", ntp: []string{"prod.time.sphere.azure.net", "time.sphere.azure.net"}},
		{name: "off", yaml: "time: {enabled: false}\n", notNTP: []string{"prod.time.sphere.azure.net"}},
		{name: "custom with fallback", yaml: "time: {source: custom, servers: [ntp.example.net, 192.0.2.123]}\n",
			ntp: []string{"ntp.example.net", "prod.time.sphere.azure.net"}, ntpAddrs: []string{"192.0.2.123"}},
		{name: "custom without fallback", yaml: "time: {source: custom, fallback: false, servers: [ntp.example.net]}\n",
			ntp: []string{"ntp.example.net"}, notNTP: []string{"prod.time.sphere.azure.net"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("/etc/pinhole/pinhole.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			p, err := CompileWith(cfg, nil, testEnv())
			if err != nil {
				t.Fatalf("CompileWith: %v", err)
			}
			for _, n := range tt.ntp {
				m, ok := p.System.MatchName(n)
				if !ok || !containsPort(m.Ports, UDP, 123) {
					t.Errorf("system may not reach %s on udp/123 (ports %v)", n, m.Ports)
				}
			}
			for _, n := range tt.notNTP {
				if m, ok := p.System.MatchName(n); ok && containsPort(m.Ports, UDP, 123) {
					t.Errorf("system may reach %s on udp/123, want not", n)
				}
			}
			var got []string
			for _, r := range p.System.Addrs {
				if containsPort(r.Ports, UDP, 123) {
					got = append(got, r.Addr.String())
				}
			}
			if diff := cmp.Diff(tt.ntpAddrs, got); diff != "" {
				t.Errorf("NTP addresses (-want +got):\n%s", diff)
			}
		})
	}
}

func containsPort(ps Ports, proto Proto, port uint16) bool {
	for _, p := range ps {
		if p.Proto == proto && p.Port == port {
			return true
		}
	}
	return false
}

func BenchmarkMatchName10k(b *testing.B) {
	a := &App{Name: "bench"}
	for i := range 10000 {
		var pat hostname.Pattern
		if i%2 == 0 {
			pat = hostname.Pattern{Kind: hostname.Exact, Name: fmt.Sprintf("host%d.svc%d.example.com", i, i%97)}
		} else {
			pat = hostname.Pattern{Kind: hostname.Wildcard, Name: fmt.Sprintf("zone%d.example.net", i)}
		}
		a.Hosts = append(a.Hosts, HostRule{Pattern: pat})
	}
	Finish(&Policy{Apps: []*App{a}})
	queries := []string{"host5000.svc53.example.com", "a.b.zone5001.example.net", "nothing.here.example.org", "x.zone9999.example.net"}
	b.Run("AllowsName", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			a.AllowsName(queries[i%len(queries)])
		}
	})
	b.Run("MatchName", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			a.MatchName(queries[i%len(queries)])
		}
	})
}
