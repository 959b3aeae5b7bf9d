package export

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func pat(t *testing.T, s string) hostname.Pattern {
	t.Helper()
	p, err := hostname.ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testRules(t *testing.T) []Rule {
	return []Rule{
		{Owner: "sensor", Hosts: []hostname.Pattern{pat(t, "api.example.test")}, Why: "AllowedConnections[0]"},
		{Owner: "sensor", Hosts: []hostname.Pattern{pat(t, "*.cdn.example.test")}, Ports: policy.Ports{{Proto: policy.TCP, Port: 443}}, Why: "AllowedConnections[1]"},
		{Owner: "sensor", Hosts: []hostname.Pattern{pat(t, "img.cdn.example.test")}, Ports: policy.Ports{{Proto: policy.TCP, Port: 8443}}, Why: "AllowedConnections[2]"},
		{Owner: "sensor", Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}, Why: "AllowedConnections[3]"},
		{Owner: "sensor", Hosts: []hostname.Pattern{pat(t, "_http._tcp.example.test")}, Why: "AllowedConnections[4]"},
		{Owner: SystemOwner, Hosts: []hostname.Pattern{pat(t, "ntp.example.test")}, Ports: policy.Ports{{Proto: policy.UDP, Port: 123}}, Why: "time"},
		{Owner: SystemOwner, Ports: policy.BothProtocols(53), Why: "DNS", DNSServers: true},
	}
}

var nftsetLine = regexp.MustCompile(`(?m)^nftset=/([^/]+)/(.*)$`)

// dnsmasqSets reads the nftset lines back: domain -> sets.
func dnsmasqSets(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range nftsetLine.FindAllStringSubmatch(text, -1) {
		if _, dup := out[m[1]]; dup {
			t.Errorf("two nftset lines for %s", m[1])
		}
		out[m[1]] = m[2]
	}
	return out
}

func TestDnsmasqLines(t *testing.T) {
	p, err := NewPlan(testRules(t), Options{Devices: []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := p.WriteDnsmasq(&b); err != nil {
		t.Fatal(err)
	}
	sets := func(keys ...string) string {
		var out []string
		for _, k := range keys {
			out = append(out, "4#inet#pinhole_devices#"+k+"_v4", "6#inet#pinhole_devices#"+k+"_v6")
		}
		return strings.Join(out, ",")
	}
	want := map[string]string{
		"api.example.test": sets("any"),
		"cdn.example.test": sets("tcp_443"),
		// dnsmasq applies only the most specific line: the wildcard's set
		// must be repeated on the line of the name under it.
		"img.cdn.example.test": sets("tcp_443", "tcp_8443"),
		"ntp.example.test":     sets("udp_123"),
	}
	if diff := cmp.Diff(want, dnsmasqSets(t, b.String())); diff != "" {
		t.Errorf("nftset lines (-want +got):\n%s\n%s", diff, b.String())
	}
	for _, s := range []string{"_http._tcp.example.test (sensor): a DNS-SD service name", "the devices' DNS servers: forwarded DNS needs --dns-server"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, b.String())
		}
	}
}

func TestNFTRules(t *testing.T) {
	p, err := NewPlan(testRules(t), Options{
		Table:      "lab",
		Devices:    []netip.Prefix{netip.MustParsePrefix("192.168.10.9/24"), netip.MustParsePrefix("2001:db8:10::/64")},
		DNSServers: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := p.WriteNFT(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	var rules []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); strings.HasSuffix(l, " accept") && strings.Contains(l, "daddr") {
			rules = append(rules, l)
		}
	}
	want := []string{
		"ip daddr @any_v4 accept", "ip6 daddr @any_v6 accept",
		"tcp dport 53 ip daddr @tcp_53_v4 accept", "tcp dport 53 ip6 daddr @tcp_53_v6 accept",
		"tcp dport 443 ip daddr @tcp_443_v4 accept", "tcp dport 443 ip6 daddr @tcp_443_v6 accept",
		"tcp dport 8443 ip daddr @tcp_8443_v4 accept", "tcp dport 8443 ip6 daddr @tcp_8443_v6 accept",
		"udp dport 53 ip daddr @udp_53_v4 accept", "udp dport 53 ip6 daddr @udp_53_v6 accept",
		"udp dport 123 ip daddr @udp_123_v4 accept", "udp dport 123 ip6 daddr @udp_123_v6 accept",
	}
	if diff := cmp.Diff(want, rules); diff != "" {
		t.Errorf("accept rules (-want +got):\n%s", diff)
	}
	for _, s := range []string{
		"elements = { 192.168.10.0/24 }", // masked
		"elements = { 2001:db8:10::/64 }",
		"elements = { 198.51.100.7 }",
		"elements = { 2001:db8::7 }",
		"elements = { 192.0.2.53 }",
		"table inet lab\ndelete table inet lab\n",
		`log prefix "lab deny: "`,
	} {
		if !strings.Contains(text, s) {
			t.Errorf("nft text lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "forwarded DNS needs --dns-server") {
		t.Error("the DNS note is printed although --dns-server was given")
	}
}

func TestPlanErrors(t *testing.T) {
	dev := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no devices", Options{}, "no device addresses"},
		{"bad table", Options{Devices: dev, Table: "x y"}, `table name "x y"`},
		{"table starting with a digit", Options{Devices: dev, Table: "1t"}, `table name "1t"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan(nil, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := (&Plan{}).Write(&strings.Builder{}, "iptables"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestDevices(t *testing.T) {
	got, err := Devices([]string{"192.168.1.0/24", "10.0.0.5", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.5/32"), netip.MustParsePrefix("2001:db8::1/128")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "example.com", "10.0.0.0/33", "fe80::1%eth0"} {
		if _, err := Devices([]string{bad}); err == nil {
			t.Errorf("Devices(%q) accepted", bad)
		}
	}
}

// TestEveryProfile: each catalog profile exports, and every host of it is on
// a dnsmasq line.
func TestEveryProfile(t *testing.T) {
	for _, name := range catalog.Names() {
		t.Run(name, func(t *testing.T) {
			params := map[string]string{}
			if name == "azure-iot-hub" {
				params["hub"] = "contoso"
			}
			prof, err := catalog.Load(name, params)
			if err != nil {
				t.Fatal(err)
			}
			rules, err := FromProfile(prof)
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewPlan(rules, Options{Devices: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := p.WriteDnsmasq(&b); err != nil {
				t.Fatal(err)
			}
			got := dnsmasqSets(t, b.String())
			for _, ep := range prof.Endpoints {
				for _, h := range ep.Hosts {
					if _, ok := got[h]; !ok {
						t.Errorf("host %s has no nftset line", h)
					}
				}
			}
		})
	}
}

// TestFromPolicyUpstreams: the DNS upstreams a config names are exported as
// addresses; ones read from the exporting machine's resolv.conf are not,
// and the DNS rule asks for the devices' servers instead.
func TestFromPolicyUpstreams(t *testing.T) {
	up := netip.MustParseAddr("192.0.2.53")
	p := policy.Finish(&policy.Policy{
		System: &policy.App{Name: policy.SystemName, Addrs: []policy.AddrRule{{Addr: up, Ports: policy.BothProtocols(53), Source: policy.SourceUpstream}}},
		Apps:   []*policy.App{{Name: "sensor", Hosts: []policy.HostRule{{Pattern: pat(t, "api.example.test"), Source: "m.json: AllowedConnections[0]"}}}},
	})
	prof, err := catalog.Load("minimal", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, known := range []bool{true, false} {
		var addrs []netip.Addr
		dnsRule, app := false, false
		for _, r := range FromPolicy(p, prof, known) {
			addrs = append(addrs, r.Addrs...)
			dnsRule = dnsRule || r.DNSServers
			app = app || r.Owner == "sensor" && len(r.Hosts) == 1 && r.Ports.Any()
		}
		if got := slices.Contains(addrs, up); got != known {
			t.Errorf("upstreams known %v: upstream exported %v", known, got)
		}
		if dnsRule == known {
			t.Errorf("upstreams known %v: DNS servers rule %v", known, dnsRule)
		}
		if !app {
			t.Errorf("upstreams known %v: the app's host is missing", known)
		}
	}
}
