package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/config"
)

// TestCompileResolvConf: upstreams come from resolv.conf only when the
// config lists none; a resolv.conf without servers (before DHCP) or missing
// compiles to a policy without upstreams that says why, and loopback
// servers (systemd-resolved's stub) are ordinary upstreams.
func TestCompileResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty", "# written by dhcpcd before it has a lease\nsearch lan\n")
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
	tests := []struct {
		name        string
		yaml        string
		upstreams   []string
		resolvConf  string
		problem     bool
		systemAddrs []string // the system's "dns upstream" address rules
	}{
		{name: "config upstreams", yaml: "dns: {upstreams: [192.0.2.1, '[2001:db8::1]:5353']}\n",
			upstreams: []string{"192.0.2.1:53", "[2001:db8::1]:5353"}, systemAddrs: []string{"192.0.2.1", "2001:db8::1"}},
		{name: "empty resolv.conf", yaml: "dns: {resolv_conf: " + empty + "}\n", resolvConf: empty, problem: true},
		{name: "missing resolv.conf", yaml: "dns: {resolv_conf: " + filepath.Join(dir, "none") + "}\n",
			resolvConf: filepath.Join(dir, "none"), problem: true},
		{name: "systemd-resolved stub", yaml: "dns: {resolv_conf: " + stub + "}\n", resolvConf: stub,
			upstreams: []string{"127.0.0.53:53"}, systemAddrs: []string{"127.0.0.53"}},
	}
	env := testEnv()
	env.ReadResolvConf = config.ReadResolvConf
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("/etc/pinhole/pinhole.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			p, err := CompileWith(cfg, nil, env)
			if err != nil {
				t.Fatalf("CompileWith: %v", err)
			}
			var ups, sys []string
			for _, u := range p.DNS.Upstreams {
				ups = append(ups, u.String())
			}
			for _, r := range p.System.Addrs {
				if r.Source == "dns upstream" {
					sys = append(sys, r.Addr.String())
				}
			}
			if diff := cmp.Diff(tt.upstreams, ups); diff != "" {
				t.Errorf("upstreams (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.systemAddrs, sys); diff != "" {
				t.Errorf("system's upstream addresses (-want +got):\n%s", diff)
			}
			if p.DNS.ResolvConf != tt.resolvConf {
				t.Errorf("DNS.ResolvConf = %q, want %q", p.DNS.ResolvConf, tt.resolvConf)
			}
			if got := p.DNS.ResolvConfProblem != ""; got != tt.problem {
				t.Errorf("DNS.ResolvConfProblem = %q, want a problem: %v", p.DNS.ResolvConfProblem, tt.problem)
			}
		})
	}
}

// TestCompileResolvConfError: an error reading resolv.conf is not a
// compile error; the policy carries it.
func TestCompileResolvConfError(t *testing.T) {
	env := testEnv()
	env.ReadResolvConf = func(string) ([]netip.AddrPort, error) { return nil, errors.New("permission denied") }
	cfg := config.Default()
	p, err := CompileWith(cfg, nil, env)
	if err != nil {
		t.Fatalf("CompileWith: %v", err)
	}
	if len(p.DNS.Upstreams) != 0 || p.DNS.ResolvConfProblem != "permission denied" {
		t.Errorf("upstreams %v, problem %q; want none and the read error", p.DNS.Upstreams, p.DNS.ResolvConfProblem)
	}
}
