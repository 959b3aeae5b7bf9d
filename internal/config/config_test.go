package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

// cmpOpts compares netip values by value.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

const examplePath = "../../examples/pinhole.yaml"

func TestParseExample(t *testing.T) {
	t.Parallel()
	got, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	dir, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:       examplePath,
		Profile:    Profile{Name: "azure-sphere"},
		Mode:       ModeEnforce,
		Unmanaged:  UnmanagedDeny,
		SystemMark: 0x70680000,
		Firewall:   Firewall{NFLOGGroup: 100, LogRate: 10, LogBurst: 50},
		DNS: DNS{
			ResolvConf:          "/etc/resolv.conf",
			StubPortBase:        5300,
			TTLFloor:            30 * time.Second,
			TTLCeiling:          time.Hour,
			Grace:               time.Minute,
			MaxAddressesPerApp:  4096,
			MaxAddressesPerName: 64,
			InsertTimeout:       100 * time.Millisecond,
			QueryTimeout:        2 * time.Second,
			AllowPrivate:        []hostname.Pattern{{Kind: hostname.Wildcard, Name: "corp.contoso.example"}},
			RateLimit:           200,
			Burst:               400,
			MaxInFlight:         64,
		},
		Time: Time{Enabled: true, Source: TimeSourceDefault, Fallback: true},
		Proxy: Proxy{
			Enabled: false,
			Address: Host{Name: "proxy.contoso.example"},
			Port:    3128,
			Auth:    ProxyAnonymous,
			NoProxy: []string{"localhost", "*.contoso.example", "10.0.0.0/8"},
		},
		ServiceLink: ServiceLink{
			Serial:    "/dev/ttyS1",
			Baud:      115200,
			Interface: "pinhole-svc",
			Address:   netip.MustParseAddr("192.168.35.2"),
			APIPort:   80,
		},
		API: API{
			Socket:        "/run/pinhole/api.sock",
			Group:         "pinhole",
			MetricsListen: netip.MustParseAddrPort("127.0.0.1:9430"),
		},
		StateDir: "/var/lib/pinhole",
		Log:      Log{Level: slog.LevelInfo, Format: LogText},
		Apps: []App{
			{Name: "telemetry", Manifest: filepath.Join(dir, "apps/telemetry/app_manifest.json"), Identity: Identity{Kind: IdentityUID, UID: 1001}},
			{Name: "webfetch", Manifest: filepath.Join(dir, "apps/webfetch/app_manifest.json"), Identity: Identity{Kind: IdentityCgroup, Cgroup: "system.slice/webfetch.service"}},
			{Name: "intruder", Manifest: filepath.Join(dir, "apps/intruder/app_manifest.json"), Identity: Identity{Kind: IdentityUser, User: "intruder"}},
		},
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("Load(%s) (-want +got):\n%s", examplePath, diff)
	}
	for _, a := range got.Apps {
		if _, err := os.Stat(a.Manifest); err != nil {
			t.Errorf("app %s: manifest: %v", a.Name, err)
		}
	}
	if _, err := got.Profile.Load(); err != nil {
		t.Errorf("Profile.Load: %v", err)
	}
}

// TestExampleDocumentsEveryKey keeps examples/pinhole.yaml complete: every
// key of the raw config must appear in it, set or in a comment, under its
// section.
func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	example := string(b)
	var missing []string
	for _, path := range keyPaths("", reflect.TypeFor[rawConfig]()) {
		parts := strings.Split(path, ".")
		key := parts[len(parts)-1]
		// Under a section or in a list item: indented, maybe commented out.
		re := regexp.MustCompile(`(?m)^[ \t]+(#[ \t]*)?(- )?` + regexp.QuoteMeta(key) + `:`)
		if len(parts) == 1 {
			re = regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:`)
		}
		if !re.MatchString(example) {
			missing = append(missing, path)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s does not document: %s", examplePath, strings.Join(missing, ", "))
	}
}

// keyPaths lists every key of a raw struct, depth first.
func keyPaths(prefix string, t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t == scalarType || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for f := range t.Fields() {
		p := join(prefix, yamlKey(f))
		out = append(out, p)
		out = append(out, keyPaths(p, f.Type)...)
	}
	return out
}

func TestKeyPathsSeeEverything(t *testing.T) {
	t.Parallel()
	paths := keyPaths("", reflect.TypeFor[rawConfig]())
	for _, want := range []string{"profile.hub", "dns.ttl_floor", "apps.cgroup", "proxy.password_file", "service_link.api_port", "log.format"} {
		found := false
		for _, p := range paths {
			found = found || p == want
		}
		if !found {
			t.Errorf("keyPaths misses %s", want)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "\n# nothing\n", "---\n", "~\n"} {
		got, err := Parse("/etc/pinhole/pinhole.yaml", []byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		want := Default()
		want.File = "/etc/pinhole/pinhole.yaml"
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", in, diff)
		}
	}
}

func TestParseMinimal(t *testing.T) {
	t.Parallel()
	const in = `
apps:
  - name: weather
    manifest: weather/app_manifest.json
    uid: 1000
`
	got, err := Parse("/etc/pinhole/pinhole.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.File = "/etc/pinhole/pinhole.yaml"
	want.Apps = []App{{Name: "weather", Manifest: "/etc/pinhole/weather/app_manifest.json", Identity: Identity{Kind: IdentityUID, UID: 1000}}}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	if got.StubPort(0) != 5300 {
		t.Errorf("StubPort(0) = %d, want 5300", got.StubPort(0))
	}
	if got.App("weather") != &got.Apps[0] || got.App("nope") != nil {
		t.Error("App lookup wrong")
	}
}

// TestParseValues checks parts of configs that are valid.
func TestParseValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		get  func(*Config) any
		want any
	}{
		{"mark hex", "system_mark: 0x10", func(c *Config) any { return c.SystemMark }, uint32(16)},
		{"mark quoted hex", `system_mark: "0X7068"`, func(c *Config) any { return c.SystemMark }, uint32(0x7068)},
		{"mark decimal", "system_mark: 42", func(c *Config) any { return c.SystemMark }, uint32(42)},
		{"audit", "mode: audit\nunmanaged: allow", func(c *Config) any { return [2]string{string(c.Mode), string(c.Unmanaged)} }, [2]string{"audit", "allow"}},
		{"upstreams", "dns:\n  upstreams: [192.0.2.1, '192.0.2.2:5353', '2001:db8::1', '[2001:db8::2]:53', '::ffff:192.0.2.3']",
			func(c *Config) any { return [2]any{c.DNS.Upstreams, c.DNS.ResolvConf} },
			[2]any{[]netip.AddrPort{
				netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("192.0.2.2:5353"),
				netip.MustParseAddrPort("[2001:db8::1]:53"), netip.MustParseAddrPort("[2001:db8::2]:53"),
				netip.MustParseAddrPort("192.0.2.3:53"),
			}, ""}},
		{"resolv_conf relative", "dns:\n  resolv_conf: run/resolv.conf", func(c *Config) any { return c.DNS.ResolvConf }, "/etc/pinhole/run/resolv.conf"},
		{"ttl", "dns: {ttl_floor: 0s, ttl_ceiling: 5m, grace: 0s}", func(c *Config) any { return [3]time.Duration{c.DNS.TTLFloor, c.DNS.TTLCeiling, c.DNS.Grace} },
			[3]time.Duration{0, 5 * time.Minute, 0}},
		{"rate fraction", "dns: {rate_limit: 0.5}", func(c *Config) any { return c.DNS.RateLimit }, 0.5},
		{"allow_private", "dns: {allow_private: [NAS.Home.Arpa., '_ipp._tcp.local']}", func(c *Config) any { return c.DNS.AllowPrivate },
			[]hostname.Pattern{{Kind: hostname.Exact, Name: "nas.home.arpa"}, {Kind: hostname.Service, Name: "_ipp._tcp.local"}}},
		{"time custom implied", "time: {servers: [Time.Contoso.Example, 192.0.2.123]}", func(c *Config) any { return c.Time },
			Time{Enabled: true, Source: TimeSourceCustom, Servers: []Host{{Name: "time.contoso.example"}, {Addr: netip.MustParseAddr("192.0.2.123")}}, Fallback: true}},
		{"time off", "time: {enabled: false, source: dhcp, fallback: false}", func(c *Config) any { return c.Time },
			Time{Enabled: false, Source: TimeSourceDHCP, Fallback: false}},
		{"proxy basic", "proxy: {address: 192.0.2.8, port: 8080, authentication: basic, username: dev, password_file: pw}", func(c *Config) any { return c.Proxy },
			Proxy{Enabled: true, Address: Host{Addr: netip.MustParseAddr("192.0.2.8")}, Port: 8080, Auth: ProxyBasic, Username: "dev", PasswordFile: "/etc/pinhole/pw"}},
		{"profile iot", "profile: {name: azure-iot-hub, hub: contoso-hub, ntp_servers: [a.example, 192.0.2.1]}", func(c *Config) any { return c.Profile },
			Profile{Name: "azure-iot-hub", Params: map[string]string{"hub": "contoso-hub", "ntp_servers": "a.example,192.0.2.1"}}},
		{"profile minimal", "profile: {name: minimal, connectivity_url: 'https://check.example/ok'}", func(c *Config) any { return c.Profile },
			Profile{Name: "minimal", Params: map[string]string{"connectivity_url": "https://check.example/ok"}}},
		{"service link", "service_link: {enabled: true, serial: /dev/ttyUSB0, baud: 921600, interface: svc0, address: 192.168.35.7, api_port: 443}", func(c *Config) any { return c.ServiceLink },
			ServiceLink{Enabled: true, Serial: "/dev/ttyUSB0", Baud: 921600, Interface: "svc0", Address: netip.MustParseAddr("192.168.35.7"), APIPort: 443}},
		{"api", "api: {socket: /run/ph.sock, group: '', metrics_listen: '[::1]:9000'}", func(c *Config) any { return c.API },
			API{Socket: "/run/ph.sock", Group: "", MetricsListen: netip.MustParseAddrPort("[::1]:9000")}},
		{"api metrics off", "api: {metrics_listen: ''}", func(c *Config) any { return c.API.MetricsListen.IsValid() }, false},
		{"log", "log: {level: debug, format: json}", func(c *Config) any { return c.Log }, Log{Level: slog.LevelDebug, Format: LogJSON}},
		{"state_dir", "state_dir: /data/pinhole/", func(c *Config) any { return c.StateDir }, "/data/pinhole"},
		{"cgroup normalised", "apps: [{name: a, manifest: /m.json, cgroup: /pinhole/a/}]", func(c *Config) any { return c.Apps[0].Identity },
			Identity{Kind: IdentityCgroup, Cgroup: "pinhole/a"}},
		{"sibling cgroups", "apps: [{name: a, manifest: /m.json, cgroup: pinhole/a}, {name: ab, manifest: /m.json, cgroup: pinhole/ab}]",
			func(c *Config) any { return len(c.Apps) }, 2},
		{"empty sections", "dns:\nproxy:\napps:\n", func(c *Config) any { return c.DNS.ResolvConf }, "/etc/resolv.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse("/etc/pinhole/pinhole.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, tt.get(c), cmpOpts...); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestParseErrors checks what is refused, where it is reported (line and
// key path) and that the message says why. want lists "line path ~text".
func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"unknown top key", "mdoe: audit\n", []string{"1 mdoe ~unknown key (did you mean mode?)"}},
		{"unknown deep key", "dns:\n  ttl_floor: 1s\n  ttl_flor: 2s\n", []string{"3 dns.ttl_flor ~did you mean ttl_floor?"}},
		{"unknown app key", "apps:\n  - name: a\n    manifest: m.json\n    uid: 5\n  - name: b\n    manifest: m.json\n    gid: 5\n",
			[]string{"5 apps[1] ~needs an identity", "7 apps[1].gid ~unknown key"}},
		{"unknown key far off", "log:\n  colour: red\n", []string{"2 log.colour ~known keys: level, format"}},
		{"duplicate key", "mode: audit\nmode: enforce\n", []string{"2 mode ~key given twice (first on line 1)"}},
		{"syntax", "dns:\n  ttl_floor: [1s\n", []string{"2  ~did not find expected"}},
		{"tab", "dns:\n\tttl_floor: 1s\n", []string{"2  ~(YAML is indented with spaces, not tabs)"}},
		{"two documents", "mode: audit\n---\nmode: enforce\n", []string{"2  ~more than one YAML document"}},
		{"not a mapping", "- a\n- b\n", []string{"1  ~expected a mapping"}},
		{"section is a value", "dns: 8.8.8.8\n", []string{"1 dns ~expected a mapping of keys (upstreams, resolv_conf"}},
		{"list for value", "mode: [audit]\n", []string{"1 mode ~expected a single value, got a list"}},
		{"value for list", "dns:\n  upstreams: 192.0.2.1\n", []string{"2 dns.upstreams ~expected a list"}},
		{"null value", "mode:\n", []string{"1 mode ~no value"}},
		{"alias", "mode: &m audit\nunmanaged: *m\n", []string{"2 unmanaged ~aliases"}},
		{"bad mode", "mode: strict\n", []string{"1 mode ~\"strict\" is not one of enforce, audit"}},
		{"bad unmanaged", "unmanaged: drop\n", []string{"1 unmanaged ~not one of deny, allow"}},
		{"mark zero", "system_mark: 0\n", []string{"1 system_mark ~0 is the mark"}},
		{"mark too big", "system_mark: 0x100000000\n", []string{"1 system_mark ~not a 32-bit number"}},
		{"mark text", "system_mark: ph\n", []string{"1 system_mark ~not a 32-bit number"}},
		{"nflog group", "firewall:\n  nflog_group: 70000\n", []string{"2 firewall.nflog_group ~70000 is outside 0..65535"}},
		{"nflog negative", "firewall:\n  nflog_group: -1\n", []string{"2 firewall.nflog_group ~not a whole number"}},
		{"octal trap", "firewall:\n  log_rate: 0x10\n", []string{"2 firewall.log_rate ~not a whole number"}},
		{"bad duration", "dns:\n  ttl_floor: 30x\n", []string{"2 dns.ttl_floor ~not a duration like 30s"}},
		{"duration without unit", "dns:\n  grace: 60\n", []string{"2 dns.grace ~60 has no unit; write it like 60s"}},
		{"negative duration", "dns:\n  grace: -1s\n", []string{"2 dns.grace ~-1s is outside 0s..24h0m0s"}},
		{"floor above ceiling", "dns:\n  ttl_floor: 2h\n  ttl_ceiling: 1h\n", []string{"2 dns.ttl_floor ~ttl_floor 2h0m0s is above ttl_ceiling 1h0m0s"}},
		{"floor above default ceiling", "dns:\n  ttl_floor: 2h\n", []string{"2 dns.ttl_floor ~above ttl_ceiling 1h0m0s"}},
		{"per name above per app", "dns:\n  max_addresses_per_app: 10\n  max_addresses_per_name: 11\n", []string{"3 dns.max_addresses_per_name ~above max_addresses_per_app 10"}},
		{"zero timeout", "dns:\n  insert_timeout: 0s\n", []string{"2 dns.insert_timeout ~outside 1ms..10s"}},
		{"bad upstream", "dns:\n  upstreams: [dns.google]\n", []string{"2 dns.upstreams[0] ~\"dns.google\" is not an IP address or IP:port"}},
		{"upstream v6 no brackets port", "dns:\n  upstreams: ['2001:db8::1:53x']\n", []string{"2 dns.upstreams[0] ~not an IP address"}},
		{"upstream unspecified", "dns:\n  upstreams: [0.0.0.0]\n", []string{"2 dns.upstreams[0] ~not a unicast address"}},
		{"upstream twice", "dns:\n  upstreams: [192.0.2.1, '192.0.2.1:53']\n", []string{"2 dns.upstreams[1] ~listed twice"}},
		{"upstreams and resolv", "dns:\n  upstreams: [192.0.2.1]\n  resolv_conf: /etc/resolv.conf\n", []string{"3 dns.resolv_conf ~either upstreams or resolv_conf"}},
		{"upstreams empty", "dns:\n  upstreams: []\n", []string{"2 dns.upstreams ~empty list"}},
		{"allow_private bad", "dns:\n  allow_private: ['*']\n", []string{"2 dns.allow_private[0] ~lone \"*\""}},
		{"rate zero", "dns:\n  rate_limit: 0\n", []string{"2 dns.rate_limit ~outside (0, 1000000]"}},
		{"rate inf", "dns:\n  rate_limit: .inf\n", []string{"2 dns.rate_limit ~not a number of queries"}},
		{"stub ports overflow", "dns:\n  stub_port_base: 65535\napps:\n  - {name: a, manifest: m, uid: 1}\n  - {name: b, manifest: m, uid: 2}\n",
			[]string{"2 dns.stub_port_base ~2 apps need ports 65535..65536"}},
		{"bool yes", "time:\n  enabled: yes\n", []string{"2 time.enabled ~\"yes\" is not true or false"}},
		{"three time servers", "time:\n  servers: [a.example, b.example, c.example]\n", []string{"2 time.servers[2] ~at most 2"}},
		{"time server bad", "time:\n  servers: ['ntp://a.example']\n", []string{"2 time.servers[0] ~neither an IP address nor a host name"}},
		{"custom without servers", "time:\n  source: custom\n", []string{"2 time.servers ~source custom needs one or two servers"}},
		{"servers with dhcp", "time:\n  source: dhcp\n  servers: [a.example]\n", []string{"3 time.servers ~only with source: custom"}},
		{"proxy no port", "proxy:\n  address: p.example\n", []string{"1 proxy.port ~port is missing"}},
		{"proxy port without address", "proxy:\n  port: 8080\n", []string{"1 proxy.address ~a port is given but no address"}},
		{"proxy enabled empty", "proxy:\n  enabled: true\n", []string{"1 proxy.address ~enabled but has no address"}},
		{"proxy address long", "proxy:\n  address: " + strings.Repeat("a", 256) + "\n  port: 1\n", []string{"2 proxy.address ~256 characters, more than 255"}},
		{"proxy anonymous with user", "proxy:\n  address: p.example\n  port: 1\n  username: u\n", []string{"4 proxy.username ~anonymous authentication takes no username"}},
		{"proxy basic without password", "proxy:\n  address: p.example\n  port: 1\n  authentication: basic\n  username: u\n", []string{"1 proxy.password ~needs a password or password_file"}},
		{"proxy basic without user", "proxy:\n  address: p.example\n  port: 1\n  authentication: basic\n  password: pw\n", []string{"1 proxy.username ~needs a username"}},
		{"proxy password both", "proxy:\n  address: p.example\n  port: 1\n  authentication: basic\n  username: u\n  password: pw\n  password_file: f\n",
			[]string{"7 proxy.password_file ~either password or password_file"}},
		{"proxy username long", "proxy:\n  address: p.example\n  port: 1\n  authentication: basic\n  username: " + strings.Repeat("u", 64) + "\n  password: pw\n",
			[]string{"5 proxy.username ~64 characters, more than 63"}},
		{"proxy username colon", "proxy:\n  address: p.example\n  port: 1\n  authentication: basic\n  username: a:b\n  password: pw\n",
			[]string{"5 proxy.username ~cannot contain ':'"}},
		{"proxy bad auth", "proxy:\n  authentication: digest\n", []string{"2 proxy.authentication ~not one of anonymous, basic"}},
		{"no_proxy long", longNoProxy(), []string{"2 proxy.no_proxy ~303 characters long written with commas, more than 255"}},
		{"no_proxy bad", "proxy:\n  no_proxy: ['http://a.example']\n", []string{"2 proxy.no_proxy[0] ~http://a.example"}},
		{"link enabled no serial", "service_link:\n  enabled: true\n", []string{"1 service_link.serial ~names no serial device"}},
		{"link relative serial", "service_link:\n  serial: ttyS1\n", []string{"2 service_link.serial ~must be an absolute path"}},
		{"link baud", "service_link:\n  baud: 100000\n", []string{"2 service_link.baud ~not a standard rate"}},
		{"link interface long", "service_link:\n  interface: pinhole-service0\n", []string{"2 service_link.interface ~16 characters long, more than 15"}},
		{"link interface slash", "service_link:\n  interface: a/b\n", []string{"2 service_link.interface ~cannot contain '/'"}},
		{"link address outside", "service_link:\n  address: 192.168.36.2\n", []string{"2 service_link.address ~outside 192.168.35.2 to 192.168.35.254"}},
		{"link address pc", "service_link:\n  address: 192.168.35.1\n", []string{"2 service_link.address ~outside"}},
		{"link port zero", "service_link:\n  api_port: 0\n", []string{"2 service_link.api_port ~0 is outside 1..65535"}},
		{"socket relative", "api:\n  socket: api.sock\n", []string{"2 api.socket ~absolute path"}},
		{"socket long", "api:\n  socket: /" + strings.Repeat("s", 107) + "\n", []string{"2 api.socket ~at most 107"}},
		{"bad group", "api:\n  group: 'wheel users'\n", []string{"2 api.group ~not a group name"}},
		{"metrics no address", "api:\n  metrics_listen: ':9430'\n", []string{"2 api.metrics_listen ~write 127.0.0.1:9430"}},
		{"metrics host name", "api:\n  metrics_listen: localhost:9430\n", []string{"2 api.metrics_listen ~not an address and port"}},
		{"state relative", "state_dir: var/lib\n", []string{"1 state_dir ~absolute"}},
		{"log level", "log:\n  level: verbose\n", []string{"2 log.level ~not one of debug, info, warn, error"}},
		{"profile unknown", "profile:\n  name: azure\n", []string{"2 profile.name ~unknown profile \"azure\""}},
		{"profile scalar", "profile: minimal\n", []string{"1 profile ~expected a mapping of keys (name, hub, ntp_servers, connectivity_url)"}},
		{"hub missing", "profile:\n  name: azure-iot-hub\n", []string{"1 profile.hub ~required"}},
		{"hub on sphere", "profile:\n  hub: contoso\n", []string{"2 profile.hub ~takes no parameters"}},
		{"hub bad", "profile:\n  name: azure-iot-hub\n  hub: my_hub\n", []string{"3 profile.hub ~letters, digits"}},
		{"ntp comma", "profile:\n  name: minimal\n  ntp_servers: ['a.example,b.example']\n", []string{"3 profile.ntp_servers[0] ~one server per list entry"}},
		{"connectivity url bad", "profile:\n  name: minimal\n  connectivity_url: ftp://x.example/\n", []string{"3 profile.connectivity_url ~http or https"}},
		{"app without name", "apps:\n  - manifest: m\n    uid: 5\n", []string{"2 apps[0].name ~every app needs a name"}},
		{"app without manifest", "apps:\n  - name: a\n    uid: 5\n", []string{"2 apps[0].manifest ~every app needs a manifest"}},
		{"app bad name", "apps:\n  - {name: Weather, manifest: m, uid: 5}\n", []string{"2 apps[0].name ~lower-case"}},
		{"app long name", "apps:\n  - {name: " + strings.Repeat("a", 32) + ", manifest: m, uid: 5}\n", []string{"2 apps[0].name ~1 to 31"}},
		{"app reserved system", "apps:\n  - {name: system, manifest: m, uid: 5}\n", []string{"2 apps[0].name ~\"system\" is reserved"}},
		{"app reserved unmanaged", "apps:\n  - {name: unmanaged, manifest: m, uid: 5}\n", []string{"2 apps[0].name ~\"unmanaged\" is reserved"}},
		{"app duplicate name", "apps:\n  - {name: a, manifest: m, uid: 5}\n  - {name: a, manifest: m, uid: 6}\n", []string{"3 apps[1].name ~app \"a\" is already defined at apps[0]"}},
		{"two identities", "apps:\n  - name: a\n    manifest: m\n    uid: 5\n    cgroup: x\n", []string{"5 apps[0].cgroup ~more than one identity (uid, cgroup)"}},
		{"no identity", "apps:\n  - name: a\n    manifest: m\n", []string{"2 apps[0] ~the app needs an identity: uid, user or cgroup"}},
		{"uid root", "apps:\n  - {name: a, manifest: m, uid: 0}\n", []string{"2 apps[0].uid ~uid 0 (root) cannot be an app"}},
		{"uid text", "apps:\n  - {name: a, manifest: m, uid: abc}\n", []string{"2 apps[0].uid ~not a user ID"}},
		{"uid too big", "apps:\n  - {name: a, manifest: m, uid: 4294967296}\n", []string{"2 apps[0].uid ~not a user ID"}},
		{"user root", "apps:\n  - {name: a, manifest: m, user: root}\n", []string{"2 apps[0].user ~root cannot be an app"}},
		{"user number", "apps:\n  - {name: a, manifest: m, user: '1000'}\n", []string{"2 apps[0].user ~\"1000\" is a number; write uid: 1000"}},
		{"user bad", "apps:\n  - {name: a, manifest: m, user: 'a b'}\n", []string{"2 apps[0].user ~not a user name"}},
		{"cgroup root", "apps:\n  - {name: a, manifest: m, cgroup: /}\n", []string{"2 apps[0].cgroup ~cgroup root"}},
		{"cgroup dotdot", "apps:\n  - {name: a, manifest: m, cgroup: pinhole/../x}\n", []string{"2 apps[0].cgroup ~'..'"}},
		{"cgroup empty component", "apps:\n  - {name: a, manifest: m, cgroup: a//b}\n", []string{"2 apps[0].cgroup ~empty component"}},
		{"duplicate uid", "apps:\n  - {name: a, manifest: m, uid: 5}\n  - {name: b, manifest: m, uid: 5}\n", []string{"3 apps[1].uid ~uid 5 is already the identity of app \"a\" (apps[0])"}},
		{"duplicate user", "apps:\n  - {name: a, manifest: m, user: web}\n  - {name: b, manifest: m, user: web}\n", []string{"3 apps[1].user ~user web is already the identity of app \"a\""}},
		{"duplicate cgroup", "apps:\n  - {name: a, manifest: m, cgroup: /p/a}\n  - {name: b, manifest: m, cgroup: p/a/}\n", []string{"3 apps[1].cgroup ~cgroup p/a is already the identity of app \"a\""}},
		{"nested cgroup", "apps:\n  - {name: a, manifest: m, cgroup: p}\n  - {name: b, manifest: m, cgroup: p/b}\n", []string{"3 apps[1].cgroup ~cgroup p/b lies inside cgroup p of app \"a\" (apps[0])"}},
		{"nested cgroup reversed", "apps:\n  - {name: a, manifest: m, cgroup: p/x/y}\n  - {name: b, manifest: m, cgroup: p}\n", []string{"2 apps[0].cgroup ~cgroup p/x/y lies inside cgroup p of app \"b\" (apps[1])"}},
		{"apps not a list", "apps:\n  name: a\n", []string{"2 apps ~expected a list, got a mapping"}},
		{"app not a mapping", "apps:\n  - a\n", []string{"2 apps[0] ~expected a mapping"}},
		{"manifest empty", "apps:\n  - {name: a, manifest: '', uid: 5}\n", []string{"2 apps[0].manifest ~empty path"}},
		{"many at once", "mode: x\ndns:\n  ttl_floor: y\n  bogus: 1\napps:\n  - {name: system, manifest: m}\n",
			[]string{"1 mode ~not one of", "3 dns.ttl_floor ~not a duration", "4 dns.bogus ~unknown key", "6 apps[0] ~needs an identity", "6 apps[0].name ~reserved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.yaml", []byte(tt.in))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse(%q) error = %v, want an *Error", tt.in, err)
			}
			got := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				got[i] = fmt.Sprintf("%d %s %s", p.Line, p.Path, p.Msg)
				if i < len(tt.want) {
					// Keep only the expected part of the message.
					prefix, text, _ := strings.Cut(tt.want[i], "~")
					if strings.Contains(p.Msg, text) {
						got[i] = fmt.Sprintf("%d %s ~%s", p.Line, p.Path, text)
					}
					_ = prefix
				}
				if p.File != "p.yaml" {
					t.Errorf("problem %d: File = %q", i, p.File)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) problems (-want +got):\n%s", tt.in, diff)
			}
			t.Logf("err:\n%v", err)
		})
	}
}

// longNoProxy is a no_proxy list of 16 names of 18 characters: 303 with
// commas.
func longNoProxy() string {
	var l []string
	for i := range 16 {
		l = append(l, fmt.Sprintf("host%02d.example.com", i))
	}
	return "proxy:\n  no_proxy: [" + strings.Join(l, ", ") + "]\n"
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	_, err := Parse("/etc/pinhole/pinhole.yaml", []byte("dns:\n  ttl_floor: 30x\napps:\n  - {name: a, manifest: m, uid: 0}\n"))
	want := `/etc/pinhole/pinhole.yaml:2:14: dns.ttl_floor: "30x" is not a duration like 30s, 100ms or 1h
/etc/pinhole/pinhole.yaml:4:33: apps[0].uid: uid 0 (root) cannot be an app: root can set pinholed's socket mark and change the firewall`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("Load(big) error = %v", err)
	}
	rel := filepath.Join(dir, "rel.yaml")
	if err := os.WriteFile(rel, []byte("apps: [{name: a, manifest: m.json, uid: 5}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(rel)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "m.json"); c.Apps[0].Manifest != want {
		t.Errorf("manifest = %q, want %q", c.Apps[0].Manifest, want)
	}
}

func TestParseUpstream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // "" for an error
	}{
		{"192.0.2.1", "192.0.2.1:53"},
		{"192.0.2.1:5353", "192.0.2.1:5353"},
		{"2001:db8::1", "[2001:db8::1]:53"},
		{"[2001:db8::1]:853", "[2001:db8::1]:853"},
		{"fe80::1%eth0", "[fe80::1%eth0]:53"},
		{"::ffff:192.0.2.1", "192.0.2.1:53"},
		{"127.0.0.53", "127.0.0.53:53"},
		{"192.0.2.1:0", ""},
		{"192.0.2.1:65536", ""},
		{"0.0.0.0", ""},
		{"::", ""},
		{"224.0.0.251", ""},
		{"dns.example", ""},
		{"[2001:db8::1]", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := ParseUpstream(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseUpstream(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseUpstream(%q) = %v, %v, want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestReadResolvConf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{"plain", "nameserver 192.0.2.1\nnameserver 2001:db8::1\n", []string{"192.0.2.1:53", "[2001:db8::1]:53"}, ""},
		{"systemd stub", "# This is /run/systemd/resolve/stub-resolv.conf\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n", []string{"127.0.0.53:53"}, ""},
		{"comments and junk", "; comment\nnameserver 192.0.2.1 # trailing\n  nameserver\t192.0.2.2\nnameserver bogus\nnameservers 192.0.2.9\n", []string{"192.0.2.1:53", "192.0.2.2:53"}, ""},
		{"zone", "nameserver fe80::1%eth0\n", []string{"[fe80::1%eth0]:53"}, ""},
		{"duplicate", "nameserver 192.0.2.1\nnameserver 192.0.2.1\n", []string{"192.0.2.1:53"}, ""},
		{"mapped", "nameserver ::ffff:192.0.2.1\n", []string{"192.0.2.1:53"}, ""},
		{"none", "search example.com\n", nil, "no nameserver line"},
		{"only bad", "nameserver 0.0.0.0\nnameserver x\nnameserver\n", nil, `no usable nameserver (line 1: 0.0.0.0 is not a unicast address; line 2: "x" is not an IP address; line 3: nameserver without address)`},
		{"crlf", "nameserver 192.0.2.1\r\n", []string{"192.0.2.1:53"}, ""},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
		if err := os.WriteFile(path, []byte(tt.in), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadResolvConf(path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: ReadResolvConf error = %v, want %q naming the file", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: ReadResolvConf: %v", tt.name, err)
			continue
		}
		var gotS []string
		for _, ap := range got {
			gotS = append(gotS, ap.String())
		}
		if diff := cmp.Diff(tt.want, gotS); diff != "" {
			t.Errorf("%s: ReadResolvConf (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := ReadResolvConf(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadResolvConf(missing) error = %v", err)
	}
}

func TestProxyReadPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		p    Proxy
		want string
		err  bool
	}{
		{"inline", Proxy{Password: "pw"}, "pw", false},
		{"file newline", Proxy{PasswordFile: write("a", "secret\n")}, "secret", false},
		{"file crlf", Proxy{PasswordFile: write("b", "secret\r\n")}, "secret", false},
		{"file bare", Proxy{PasswordFile: write("c", "secret")}, "secret", false},
		{"file two lines", Proxy{PasswordFile: write("d", "one\ntwo\n")}, "", true},
		{"file empty", Proxy{PasswordFile: write("e", "\n")}, "", true},
		{"file long", Proxy{PasswordFile: write("f", strings.Repeat("p", 64))}, "", true},
		{"file missing", Proxy{PasswordFile: filepath.Join(dir, "none")}, "", true},
	}
	for _, tt := range tests {
		got, err := tt.p.ReadPassword()
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s: ReadPassword() = %q, %v; want %q, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestParseHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"Pool.NTP.org.", "pool.ntp.org"},
		{"192.0.2.1", "192.0.2.1"},
		{"2001:DB8::1", "2001:db8::1"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"*.ntp.org", ""},
		{"0.0.0.0", ""},
		{"a b", ""},
		{"", ""},
	}
	for _, tt := range tests {
		h, err := ParseHost(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseHost(%q) = %v, want an error", tt.in, h)
			}
			continue
		}
		if err != nil || h.String() != tt.want {
			t.Errorf("ParseHost(%q) = %v, %v, want %s", tt.in, h, err, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"mdoe", "mode", 2}, {"ttl_flor", "ttl_floor", 1}, {"abc", "", 3}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
