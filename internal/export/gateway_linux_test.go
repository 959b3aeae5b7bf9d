package export

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// gateway is the test's own namespace routing between a "client" namespace
// (the devices behind the gateway) and the bed's internet namespace.
type gateway struct {
	bed      *netnstest.Bed
	client   string // namespace name
	gw4      netip.Addr
	client4  netip.Addr
	gw6      netip.Addr
	client6  netip.Addr
	upstream netip.Addr // dnsmasq in the internet namespace
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newGateway(t *testing.T) *gateway {
	bed := netnstest.New(t)
	g := &gateway{
		bed:     bed,
		client:  fmt.Sprintf("ph-cli-%d-%d", os.Getpid(), bed.Index),
		gw4:     netip.AddrFrom4([4]byte{10, 78, byte(bed.Index), 1}),
		client4: netip.AddrFrom4([4]byte{10, 78, byte(bed.Index), 2}),
		gw6:     netip.MustParseAddr(fmt.Sprintf("fd00:78:0:%x::1", bed.Index)),
		client6: netip.MustParseAddr(fmt.Sprintf("fd00:78:0:%x::2", bed.Index)),
	}
	veth, peer := fmt.Sprintf("phgw%d", bed.Index), fmt.Sprintf("phcl%d", bed.Index)
	run(t, "ip", "netns", "add", g.client)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", g.client).Run()
	})
	run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", g.client)
	t.Cleanup(func() { exec.Command("ip", "link", "del", veth).Run() })
	run(t, "ip", "addr", "add", g.gw4.String()+"/24", "dev", veth)
	run(t, "ip", "addr", "add", g.gw6.String()+"/64", "dev", veth, "nodad")
	run(t, "ip", "link", "set", veth, "up")
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", g.client4.String() + "/24", "dev", peer},
		{"addr", "add", g.client6.String() + "/64", "dev", peer, "nodad"},
		{"link", "set", peer, "up"},
		{"route", "add", "default", "via", g.gw4.String()},
		{"-6", "route", "add", "default", "via", g.gw6.String()},
	} {
		run(t, "ip", append([]string{"-n", g.client}, args...)...)
	}
	// The internet side routes the client's subnets back through us.
	bed.Exec(t, "ip", "route", "add", netip.PrefixFrom(g.client4, 24).Masked().String(), "via", bed.DeviceV4.String())
	bed.Exec(t, "ip", "-6", "route", "add", netip.PrefixFrom(g.client6, 64).Masked().String(), "via", bed.DeviceV6.String())
	for _, k := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding"} {
		if err := os.WriteFile("/proc/sys/net/"+k, []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// startDnsmasq runs dnsmasq with args in the bed (inet) or in the gateway,
// and waits until it answers name.
func (g *gateway) startDnsmasq(t *testing.T, inet bool, listen netip.Addr, name string, args ...string) {
	t.Helper()
	args = append([]string{"--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address=" + listen.String(), "--port=53", "--log-facility=-", "--log-queries",
		"--pid-file=" + filepath.Join(t.TempDir(), "dnsmasq.pid")}, args...)
	var cmd *exec.Cmd
	if inet {
		cmd = g.bed.Command(context.Background(), "dnsmasq", args...)
	} else {
		cmd = exec.Command("dnsmasq", args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq on %s:\n%s", listen, out.String())
		}
	})
	netnstest.WaitFor(t, 10*time.Second, func() bool {
		return exec.Command("dig", "+time=1", "+tries=1", "+short", "@"+listen.String(), name).Run() == nil
	})
}

// dig resolves name from the client, through the gateway's dnsmasq.
func (g *gateway) dig(t *testing.T, qtype, name string) netip.Addr {
	t.Helper()
	out := run(t, "ip", "netns", "exec", g.client, "dig", "+time=2", "+tries=1", "+short", "@"+g.gw4.String(), qtype, name)
	lines := strings.Fields(out)
	if len(lines) == 0 {
		t.Fatalf("dig %s %s: no answer", qtype, name)
	}
	a, err := netip.ParseAddr(lines[len(lines)-1]) // after the CNAMEs
	if err != nil {
		t.Fatalf("dig %s %s: %q", qtype, name, out)
	}
	return a
}

// connects reports whether a TCP connection from the client to addr:port is
// accepted; a refused one must fail fast (reset), not time out.
func (g *gateway) connects(t *testing.T, addr netip.Addr, port uint16) bool {
	t.Helper()
	start := time.Now()
	err := exec.Command("ip", "netns", "exec", g.client, "nc", "-z", "-w", "3", addr.String(), fmt.Sprint(port)).Run()
	if err != nil && time.Since(start) > 2*time.Second {
		t.Errorf("connect to %s port %d: refused only after %v (a drop, not a reset)", addr, port, time.Since(start).Round(time.Millisecond))
	}
	return err == nil
}

// TestGateway loads the export into a real gateway (nft -f, dnsmasq with the
// nftset lines) and checks what a device behind it can reach.
func TestGateway(t *testing.T) {
	g := newGateway(t)
	bed := g.bed
	api4, api6 := bed.AddPublic(t, false), bed.AddPublic(t, true)
	edge4 := bed.AddPublic(t, false)
	other4 := bed.AddPublic(t, false)
	lit4 := bed.AddPublic(t, false)
	g.upstream = bed.PublicV4
	for _, port := range []uint16{443, 8080} {
		bed.TCPEcho(t, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
	}
	g.startDnsmasq(t, true, g.upstream, "api.example.test",
		"--host-record=api.example.test,"+api4.String()+","+api6.String(),
		"--cname=www.cdn.example.test,edge.cdnprovider.test",
		"--host-record=edge.cdnprovider.test,"+edge4.String(),
		"--host-record=other.example.test,"+other4.String())

	rules := []Rule{
		{Owner: "sensor", Hosts: []hostname.Pattern{pat(t, "api.example.test")}, Why: "any port"},
		{Owner: "sensor", Hosts: []hostname.Pattern{pat(t, "*.cdn.example.test")}, Ports: policy.Ports{{Proto: policy.TCP, Port: 443}}, Why: "wildcard on 443"},
		{Owner: "sensor", Addrs: []netip.Addr{lit4}, Why: "literal address"},
	}
	plan, err := NewPlan(rules, Options{Devices: []netip.Prefix{netip.PrefixFrom(g.client4, 24), netip.PrefixFrom(g.client6, 64)}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nftFile, dnsmasqFile := filepath.Join(dir, "devices.nft"), filepath.Join(dir, "devices.conf")
	for file, write := range map[string]func(*bytes.Buffer) error{
		nftFile:     func(b *bytes.Buffer) error { return plan.WriteNFT(b) },
		dnsmasqFile: func(b *bytes.Buffer) error { return plan.WriteDnsmasq(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "nft", "-f", nftFile)
	run(t, "nft", "-f", nftFile) // loading it again replaces it
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("nft", "list", "table", "inet", DefaultTable).CombinedOutput()
			t.Logf("table at failure:\n%s", out)
		}
	})
	// Ready when it answers a name that fills no set.
	g.startDnsmasq(t, false, g.gw4, "other.example.test", "--server="+g.upstream.String(), "--conf-file="+dnsmasqFile)

	// Nothing is open before the names are looked up, except the literal.
	if g.connects(t, api4, 8080) {
		t.Error("api.example.test's address reachable before any lookup")
	}
	if !g.connects(t, lit4, 8080) {
		t.Error("the literal address is not reachable")
	}
	// A name with any port: every port of each address in its answer.
	if got := g.dig(t, "A", "api.example.test"); got != api4 {
		t.Fatalf("api.example.test A = %v, want %v", got, api4)
	}
	if got := g.dig(t, "AAAA", "api.example.test"); got != api6 {
		t.Fatalf("api.example.test AAAA = %v, want %v", got, api6)
	}
	for _, c := range []struct {
		addr netip.Addr
		port uint16
	}{{api4, 8080}, {api4, 443}, {api6, 8080}} {
		if !g.connects(t, c.addr, c.port) {
			t.Errorf("api.example.test at %s port %d refused after the lookup", c.addr, c.port)
		}
	}
	// A wildcard on one port, answered through a CNAME chain to a name the
	// rules do not list.
	if got := g.dig(t, "A", "www.cdn.example.test"); got != edge4 {
		t.Fatalf("www.cdn.example.test = %v, want %v", got, edge4)
	}
	if !g.connects(t, edge4, 443) {
		t.Error("www.cdn.example.test (CNAME to edge.cdnprovider.test) refused on port 443")
	}
	if g.connects(t, edge4, 8080) {
		t.Error("www.cdn.example.test reachable on port 8080, which its rule does not list")
	}
	// A name not listed: dnsmasq answers it, but nothing opens.
	if got := g.dig(t, "A", "other.example.test"); got != other4 {
		t.Fatalf("other.example.test = %v, want %v", got, other4)
	}
	if g.connects(t, other4, 8080) {
		t.Error("other.example.test reachable although no rule lists it")
	}
	set := run(t, "nft", "list", "set", "inet", DefaultTable, "tcp_443_v4")
	if !strings.Contains(set, edge4.String()) || strings.Contains(set, other4.String()) {
		t.Errorf("set tcp_443_v4 after the lookups:\n%s", set)
	}
}
