package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/netns"
)

// Bed is an "internet" network namespace joined to the current ("device")
// namespace by a veth pair. Its addresses depend on its Index (1 to 250):
//
//	link      device 10.77.I.1/24, fd00:77:0:I::1/64   internet 10.77.I.2, fd00:77:0:I::2
//	public    198.18.I.0/24 and 2001:db8:I::/48 on the internet side's lo,
//	          routed from the device via the link
//	default   device -> internet side (metric 1000+I), a dead end: the
//	          internet namespace does not forward
type Bed struct {
	Name      string // network namespace name, "ph-inet-<rand>"
	Index     int
	NetnsPath string // /run/netns/Name, for nsenter --net=
	DevLink   string // veth in the device namespace
	InetLink  string // veth in the internet namespace

	DeviceV4, DeviceV6   netip.Addr   // device's end of the link
	GatewayV4, GatewayV6 netip.Addr   // internet's end of the link (the default gateway)
	LinkV4, LinkV6       netip.Prefix // the link subnets
	PublicV4, PublicV6   netip.Addr   // first public address on the internet side
	PrefixV4, PrefixV6   netip.Prefix // public prefixes routed to this bed

	mu       sync.Mutex
	next4    netip.Addr
	next6    netip.Addr
	cmds     []*exec.Cmd
	closed   bool
	closeErr error
}

var (
	indexMu   sync.Mutex
	indexUsed = map[int]bool{}
)

func allocIndex() (int, error) {
	indexMu.Lock()
	defer indexMu.Unlock()
	for i := 1; i <= 250; i++ {
		if !indexUsed[i] {
			indexUsed[i] = true
			return i, nil
		}
	}
	return 0, errors.New("more than 250 beds at once")
}

func freeIndex(i int) {
	indexMu.Lock()
	defer indexMu.Unlock()
	delete(indexUsed, i)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// New creates a Bed and removes it when the test ends. It skips the test when
// not root and fails it in the initial network namespace.
func New(t testing.TB) *Bed {
	t.Helper()
	RequireDevice(t)
	idx, err := allocIndex()
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	suffix := randHex(4)
	b := &Bed{
		Name:      netnsPrefix + strconv.Itoa(os.Getpid()) + "-" + suffix,
		Index:     idx,
		DevLink:   "phd-" + suffix,
		InetLink:  "phi-" + suffix,
		DeviceV4:  netip.AddrFrom4([4]byte{10, 77, byte(idx), 1}),
		GatewayV4: netip.AddrFrom4([4]byte{10, 77, byte(idx), 2}),
		LinkV4:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(idx), 0}), 24),
		PublicV4:  netip.AddrFrom4([4]byte{198, 18, byte(idx), 1}),
		PrefixV4:  netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(idx), 0}), 24),
	}
	b.NetnsPath = "/run/netns/" + b.Name
	b.DeviceV6 = netip.MustParseAddr(fmt.Sprintf("fd00:77:0:%x::1", idx))
	b.GatewayV6 = netip.MustParseAddr(fmt.Sprintf("fd00:77:0:%x::2", idx))
	b.LinkV6 = netip.MustParsePrefix(fmt.Sprintf("fd00:77:0:%x::/64", idx))
	b.PublicV6 = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", idx))
	b.PrefixV6 = netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", idx))
	b.next4, b.next6 = b.PublicV4.Next(), b.PublicV6.Next()
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("netnstest: remove bed %s: %v", b.Name, err)
		}
	})
	if err := b.setup(); err != nil {
		t.Fatalf("netnstest: create bed %s: %v", b.Name, err)
	}
	return b
}

func (b *Bed) setup() error {
	metric := strconv.Itoa(1000 + b.Index)
	// Three ip processes in batch mode: spawning is what costs on a busy machine.
	device := []string{
		"netns add " + b.Name,
		"link add " + b.DevLink + " type veth peer name " + b.InetLink + " netns " + b.Name,
		"addr add " + prefixOf(b.DeviceV4, b.LinkV4) + " dev " + b.DevLink,
		"addr add " + prefixOf(b.DeviceV6, b.LinkV6) + " dev " + b.DevLink + " nodad",
		"link set " + b.DevLink + " up",
	}
	inet := []string{
		"link set lo up",
		"addr add " + prefixOf(b.GatewayV4, b.LinkV4) + " dev " + b.InetLink,
		"addr add " + prefixOf(b.GatewayV6, b.LinkV6) + " dev " + b.InetLink + " nodad",
		"addr add " + b.PublicV4.String() + "/32 dev lo",
		"addr add " + b.PublicV6.String() + "/128 dev lo nodad",
		"link set " + b.InetLink + " up",
	}
	routes := []string{
		"route add " + b.PrefixV4.String() + " via " + b.GatewayV4.String() + " dev " + b.DevLink,
		"route add " + b.PrefixV6.String() + " via " + b.GatewayV6.String() + " dev " + b.DevLink,
		"route add default via " + b.GatewayV4.String() + " dev " + b.DevLink + " metric " + metric,
		"route add ::/0 via " + b.GatewayV6.String() + " dev " + b.DevLink + " metric " + metric,
	}
	if err := ipBatch("", device); err != nil {
		return err
	}
	if err := ipBatch(b.Name, inet); err != nil {
		return err
	}
	if err := ipBatch("", routes); err != nil {
		return err
	}
	// A new namespace does not forward, but make sure: the internet side must
	// be a dead end whatever the defaults are.
	return netns.Do(b.NetnsPath, func() error {
		for _, k := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding"} {
			if err := os.WriteFile("/proc/sys/net/"+k, []byte("0"), 0); err != nil {
				return err
			}
		}
		return nil
	})
}

// ipBatch runs ip -batch with the given lines, in namespace ns if not "".
func ipBatch(ns string, lines []string) error {
	args := []string{"-b", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s <<%q: %w: %s", strings.Join(args, " "), lines, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func prefixOf(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AddPublic assigns another public address (IPv6 if v6) on the internet
// side, inside the bed's public prefix, and returns it.
func (b *Bed) AddPublic(t testing.TB, v6 bool) netip.Addr {
	t.Helper()
	b.mu.Lock()
	var a netip.Addr
	if v6 {
		a, b.next6 = b.next6, b.next6.Next()
	} else {
		a, b.next4 = b.next4, b.next4.Next()
	}
	b.mu.Unlock()
	pfx := b.PrefixV4
	if v6 {
		pfx = b.PrefixV6
	}
	if !pfx.Contains(a) || (!v6 && a.As4()[3] == 255) {
		t.Fatalf("netnstest: bed %s: public prefix %s exhausted", b.Name, pfx)
	}
	args := []string{"-n", b.Name, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"}
	if v6 {
		args = append(args, "nodad")
	}
	if err := run("ip", args...); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	return a
}

// Command returns a command that runs in the internet namespace. Processes it
// starts are killed when the bed is removed.
func (b *Bed) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + b.NetnsPath, "--", name}, args...)...)
	b.mu.Lock()
	b.cmds = append(b.cmds, cmd)
	b.mu.Unlock()
	return cmd
}

// Exec runs a command in the internet namespace and returns its combined
// output; it fails the test if the command fails.
func (b *Bed) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := b.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", b.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// StartRole runs the test binary as helper role (RegisterRole) in the
// internet namespace, waits until it is ready and stops it at cleanup.
func (b *Bed) StartRole(t testing.TB, role string, args ...string) *Server {
	t.Helper()
	return startRole(t, roleSpec{wrapper: []string{"nsenter", "--net=" + b.NetnsPath, "--"}}, role, args)
}

// TCPEcho starts a TCP echo server on addr in the internet namespace.
func (b *Bed) TCPEcho(t testing.TB, addr netip.AddrPort) *Server {
	t.Helper()
	return b.StartRole(t, "tcp-echo", addr.String())
}

// UDPEcho starts a UDP echo server on addr in the internet namespace.
func (b *Bed) UDPEcho(t testing.TB, addr netip.AddrPort) *Server {
	t.Helper()
	return b.StartRole(t, "udp-echo", addr.String())
}

// HTTP starts an HTTP server on addr in the internet namespace; it answers
// every request with an HTTPReply naming its own and the client's address.
func (b *Bed) HTTP(t testing.TB, addr netip.AddrPort) *Server {
	t.Helper()
	return b.StartRole(t, "http", addr.String())
}

// Close removes the bed: kills its processes, deletes the veth pair and the
// namespace. New registers it with t.Cleanup; calling it again does nothing.
// It works on a half-built bed too.
func (b *Bed) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.closeErr
	}
	b.closed = true
	cmds := b.cmds
	b.mu.Unlock()

	var errs []error
	for _, c := range cmds {
		// Kill is safe after Wait and concurrent with it; ProcessState is not.
		if c.Process != nil {
			c.Process.Kill()
		}
	}
	if err := killNetnsProcs(b.NetnsPath, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	var del []string
	// /sys/class/net shows the namespace that mounted /sys, not ours: ask netlink.
	if _, err := net.InterfaceByName(b.DevLink); err == nil {
		del = append(del, "link del "+b.DevLink)
	}
	if _, err := os.Stat(b.NetnsPath); err == nil {
		del = append(del, "netns del "+b.Name)
	}
	if len(del) > 0 {
		if err := ipBatch("", del); err != nil {
			errs = append(errs, err)
		}
	}
	freeIndex(b.Index)
	b.mu.Lock()
	b.closeErr = errors.Join(errs...)
	b.mu.Unlock()
	return b.closeErr
}

// killNetnsProcs SIGKILLs every process in the namespace at path until none
// is left or the timeout passes.
func killNetnsProcs(path string, timeout time.Duration) error {
	var ns unix.Stat_t
	if err := unix.Stat(path, &ns); err != nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		pids, err := netns.Pids(netns.ID{Dev: ns.Dev, Ino: ns.Ino})
		if err != nil {
			return fmt.Errorf("list processes in %s: %w", path, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %s survive SIGKILL", pids, path)
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
