package netnstest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/pinhole-net/pinhole/internal/cgroup"
)

func TestMain(m *testing.M) { Main(m) }

var cmpAddrs = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

func TestDeviceNamespace(t *testing.T) {
	RequireRoot(t)
	initial, err := InInitialNetns()
	if err != nil {
		t.Fatal(err)
	}
	if initial {
		t.Fatal("tests run in the initial network namespace although Main re-executed them")
	}
	out := Exec(t, "ip", "-o", "link", "show", "lo")
	if !strings.Contains(out, "UP") {
		t.Fatalf("lo is not up in the device namespace: %s", out)
	}
}

// leftovers lists what of a bed still exists.
func leftovers(b *Bed) []string {
	var left []string
	if _, err := os.Stat(b.NetnsPath); err == nil {
		left = append(left, "netns "+b.Name)
	}
	if _, err := net.InterfaceByName(b.DevLink); err == nil {
		left = append(left, "veth "+b.DevLink)
	}
	return left
}

// threadNetns returns the distinct network namespaces of this process's threads.
func threadNetns(t *testing.T) map[string]bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, task := range tasks {
		if l, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net"); err == nil {
			m[l] = true
		}
	}
	return m
}

func TestBedUpAndDown(t *testing.T) {
	RequireDevice(t)
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	b := New(t)
	// Setting the internet side up must leave every thread in the device namespace.
	if diff := cmp.Diff(map[string]bool{own: true}, threadNetns(t)); diff != "" {
		t.Fatalf("thread namespaces after New (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"netns " + b.Name, "veth " + b.DevLink}, leftovers(b)); diff != "" {
		t.Fatalf("bed not fully up (-want +got):\n%s", diff)
	}
	for _, a := range []netip.Addr{b.PublicV4, b.PublicV6, b.DeviceV4, b.DeviceV6} {
		if a.IsPrivate() != (a == b.DeviceV4 || a == b.DeviceV6) {
			t.Errorf("%v: IsPrivate = %v", a, a.IsPrivate())
		}
	}
	// A stray process in the internet namespace must not survive Close.
	stray := b.Command(context.Background(), "sleep", "1000")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	srv := b.TCPEcho(t, netip.AddrPortFrom(b.PublicV4, 0))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(b); len(left) > 0 {
		t.Fatalf("left behind after Close: %v", left)
	}
	if err := stray.Wait(); err == nil {
		t.Fatal("stray process exited 0, want killed")
	}
	if err := srv.Stop(); err == nil {
		t.Fatal("server exited 0 after its namespace was removed, want killed")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseHalfBuiltBed(t *testing.T) {
	RequireDevice(t)
	b := &Bed{Name: "ph-inet-half" + randHex(2), DevLink: "phd-half" + randHex(2), Index: 251}
	b.NetnsPath = "/run/netns/" + b.Name
	if err := run("ip", "netns", "add", b.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run("ip", "netns", "del", b.Name) })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(b); len(left) > 0 {
		t.Fatalf("left behind after Close: %v", left)
	}
}

func echoTCP(t *testing.T, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "hello %s\n", addr)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("hello %s\n", addr); line != want {
		t.Fatalf("echo = %q, want %q", line, want)
	}
	return addrPortOf(c.LocalAddr())
}

func TestReachInternet(t *testing.T) {
	b := New(t)
	for _, tc := range []struct {
		name   string
		server netip.Addr
		client netip.Addr
	}{
		{"v4", b.PublicV4, b.DeviceV4},
		{"v6", b.PublicV6, b.DeviceV6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tcp := b.TCPEcho(t, netip.AddrPortFrom(tc.server, 7))
			if tcp.Addr != netip.AddrPortFrom(tc.server, 7) {
				t.Fatalf("server reports %v", tcp.Addr)
			}
			local := echoTCP(t, tcp.Addr)
			ev := tcp.WaitEvents(t, 1, 5*time.Second)
			if diff := cmp.Diff([]Event{{Kind: "tcp", Local: tcp.Addr, Remote: local}}, ev, cmpAddrs); diff != "" {
				t.Errorf("tcp events (-want +got):\n%s", diff)
			}
			if local.Addr() != tc.client {
				t.Errorf("device used source %v, want %v", local.Addr(), tc.client)
			}

			udp := b.UDPEcho(t, netip.AddrPortFrom(tc.server, 0))
			c, err := net.Dial("udp", udp.Addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("ping"))
			buf := make([]byte, 16)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("udp echo = %q, %v", buf[:n], err)
			}
			ev = udp.WaitEvents(t, 1, 5*time.Second)
			if diff := cmp.Diff([]Event{{Kind: "udp", Local: udp.Addr, Remote: addrPortOf(c.LocalAddr()), Detail: "4 bytes"}}, ev, cmpAddrs); diff != "" {
				t.Errorf("udp events (-want +got):\n%s", diff)
			}

			web := b.HTTP(t, netip.AddrPortFrom(tc.server, 80))
			out := Exec(t, "curl", "-sS", "-m", "5", "-g", "http://"+web.Addr.String()+"/x")
			var rep HTTPReply
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("curl output %q: %v", out, err)
			}
			ev = web.WaitEvents(t, 1, 5*time.Second)
			if rep.Local != web.Addr.String() || rep.Path != "/x" || rep.Remote != ev[0].Remote.String() || ev[0].Remote.Addr() != tc.client {
				t.Errorf("http reply %+v, event %+v", rep, ev[0])
			}
		})
	}
}

func TestAddPublic(t *testing.T) {
	b := New(t)
	for _, v6 := range []bool{false, true} {
		a := b.AddPublic(t, v6)
		if a.Is6() != v6 || !(v6 && b.PrefixV6.Contains(a) || !v6 && b.PrefixV4.Contains(a)) || a.IsPrivate() {
			t.Fatalf("AddPublic(%v) = %v", v6, a)
		}
		if a == b.PublicV4 || a == b.PublicV6 {
			t.Fatalf("AddPublic returned the first public address %v", a)
		}
		srv := b.TCPEcho(t, netip.AddrPortFrom(a, 0))
		echoTCP(t, srv.Addr)
	}
}

func TestDeadEndDefaultRoute(t *testing.T) {
	b := New(t)
	// Somewhere outside every bed's prefixes: the default route takes it to
	// the internet namespace, which drops it. sendto must succeed, so output
	// hooks (NAT redirect of DNS) see such packets.
	for _, dst := range []string{"203.0.113.9:53", "[2001:db8:ffff::9]:53"} {
		c, err := net.Dial("udp", dst)
		if err != nil {
			t.Fatalf("%s: %v", dst, err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Errorf("sendto %s: %v", dst, err)
		}
		c.Close()
	}
	out := b.Exec(t, "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
	if strings.Fields(out)[0] != "0" || strings.Fields(out)[1] != "0" {
		t.Errorf("internet namespace forwards: %q", out)
	}
}

func TestTwoBeds(t *testing.T) {
	b1, b2 := New(t), New(t)
	if b1.Index == b2.Index || b1.PrefixV4.Overlaps(b2.PrefixV4) || b1.LinkV6.Overlaps(b2.LinkV6) || b1.DevLink == b2.DevLink {
		t.Fatalf("beds overlap: %+v %+v", b1, b2)
	}
	for _, b := range []*Bed{b1, b2} {
		for _, a := range []netip.Addr{b.PublicV4, b.PublicV6} {
			srv := b.TCPEcho(t, netip.AddrPortFrom(a, 0))
			if local := echoTCP(t, srv.Addr); local.Addr() != b.DeviceV4 && local.Addr() != b.DeviceV6 {
				t.Errorf("reached %v from %v, want this bed's link", srv.Addr, local)
			}
		}
	}
	// Removing the first bed leaves the second (and its default route) working.
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	srv := b2.TCPEcho(t, netip.AddrPortFrom(b2.PublicV4, 0))
	echoTCP(t, srv.Addr)
	if out := Exec(t, "ip", "route", "show", "default"); !strings.Contains(out, b2.GatewayV4.String()) {
		t.Errorf("default route after removing bed 1: %q", out)
	}
}

func TestAppIdentity(t *testing.T) {
	app := NewApp(t, "weather")
	if app.Level != 2 || !strings.HasSuffix(app.Cgroup, "/weather") || app.UID < FirstUID || app.GID != app.UID {
		t.Fatalf("app = %+v", app)
	}
	if id, err := cgroup.ID(app.Cgroup); err != nil || id != app.CgroupID {
		t.Fatalf("cgroup id %d, %v; app says %d", id, err, app.CgroupID)
	}
	own, err := cgroup.Of(0)
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(int(app.UID))
	for _, tc := range []struct {
		id         Ident
		cg, uid, g string
	}{
		{Full, app.Cgroup, uid, uid},
		{Ident{UID: true}, own, uid, uid},
		{Ident{Cgroup: true}, app.Cgroup, "0", "0"},
		{Ident{}, own, "0", "0"},
	} {
		out, err := app.CommandAs(context.Background(), tc.id, "sh", "-c", "cat /proc/self/cgroup; id -u; id -g; id -G").Output()
		if err != nil {
			t.Fatalf("%+v: %v", tc.id, err)
		}
		cg, err := cgroup.ParseProcCgroup(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		got := []string{cg, lines[len(lines)-3], lines[len(lines)-2], lines[len(lines)-1]}
		if diff := cmp.Diff([]string{tc.cg, tc.uid, tc.g, tc.g}, got); diff != "" {
			t.Errorf("%+v: cgroup, uid, gid, groups (-want +got):\n%s", tc.id, diff)
		}
	}
}

func TestAppCleanup(t *testing.T) {
	app := NewApp(t, "svc/nested")
	if app.Level != 3 {
		t.Fatalf("level %d, want 3", app.Level)
	}
	// One process in the cgroup that the test forgets, one the test never waits for.
	sleeper := app.Command(context.Background(), "sleep", "1000")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	uidOnly := app.CommandAs(context.Background(), Ident{UID: true}, "sleep", "1000")
	if err := uidOnly.Start(); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	p, _ := cgroup.Path(app.top)
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cgroup %s still exists: %v", p, err)
	}
	for _, c := range []*exec.Cmd{sleeper, uidOnly} {
		if err := c.Wait(); err == nil {
			t.Errorf("%v exited 0, want killed", c.Args)
		}
	}
	if err := app.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestAppReachesServer runs curl as the app against the internet side.
func TestAppReachesServer(t *testing.T) {
	b := New(t)
	app := NewApp(t, "curl")
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 8080))
	out, err := app.Command(context.Background(), "curl", "-sS", "-m", "5", "http://"+web.Addr.String()+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("curl as app: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), b.DeviceV4.String()) {
		t.Errorf("reply %q does not name the device address", out)
	}
}

func TestRoleErrors(t *testing.T) {
	b := New(t)
	// A server that cannot bind (address not in the namespace) fails fast,
	// not after ReadyTimeout.
	start := time.Now()
	ft := &fakeT{TB: t}
	func() {
		defer func() { recover() }()
		b.TCPEcho(ft, netip.MustParseAddrPort("192.0.2.1:1"))
	}()
	if !ft.failed || !strings.Contains(ft.msg, "exited before it was ready") {
		t.Fatalf("failed=%v msg=%q", ft.failed, ft.msg)
	}
	if d := time.Since(start); d > ReadyTimeout/2 {
		t.Errorf("took %v", d)
	}
}

// fakeT records a Fatal instead of ending the test; Fatal panics to unwind.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	panic(f)
}
func (f *fakeT) Helper() {}

func TestAppServerRole(t *testing.T) {
	b := New(t)
	app := NewApp(t, "server")
	srv := app.StartRole(t, Full, "tcp-echo", netip.AddrPortFrom(b.DeviceV4, 80).String())
	if cg, err := cgroup.Of(srv.Pid()); err != nil || cg != app.Cgroup {
		t.Errorf("server cgroup = %q, %v; want %q", cg, err, app.Cgroup)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(int(app.UID))
	if want := "Uid:\t" + uid + "\t" + uid; !strings.Contains(string(status), want) {
		t.Errorf("server status has no %q:\n%s", want, status)
	}
	out := b.Exec(t, "sh", "-c", "echo hi | socat -t 5 - TCP:"+srv.Addr.String()+",connect-timeout=5")
	if out != "hi\n" {
		t.Errorf("echo from the internet side = %q", out)
	}
	ev := srv.WaitEvents(t, 1, 5*time.Second)
	if ev[0].Remote.Addr() != b.GatewayV4 {
		t.Errorf("peer %v, want the internet side %v", ev[0].Remote, b.GatewayV4)
	}
}

func TestSweep(t *testing.T) {
	RequireDevice(t)
	// Leftovers of a "killed" binary: an unused pid well above pid_max's default.
	dead := "99999999-" + randHex(4)
	ns := netnsPrefix + dead
	if err := ipBatch("", []string{"netns add " + ns}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run("ip", "netns", "del", ns) })
	stray := exec.Command("nsenter", "--net=/run/netns/"+ns, "--", "sleep", "1000")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	cg := cgroupPrefix + dead
	if err := cgroup.Create(cg + "/app"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cgroup.Kill(cg); cgroup.Remove(cg) })
	// ... and things of a live one (this binary), which must stay.
	live := New(t)
	app := NewApp(t, "live")

	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + ns); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead binary's netns still there: %v", err)
	}
	if err := stray.Wait(); err == nil {
		t.Errorf("process in the dead binary's netns exited 0, want killed")
	}
	if p, _ := cgroup.Path(cg); p != "" {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dead binary's cgroup still there: %v", err)
		}
	}
	if _, err := os.Stat(live.NetnsPath); err != nil {
		t.Errorf("live bed's netns removed: %v", err)
	}
	if _, err := cgroup.ID(app.Cgroup); err != nil {
		t.Errorf("live app's cgroup removed: %v", err)
	}
}

// TestNoGoroutineLeak checks that a bed, its servers and an app leave no
// goroutine behind once their test's cleanups ran.
func TestNoGoroutineLeak(t *testing.T) {
	RequireDevice(t)
	before := goleak.IgnoreCurrent()
	t.Run("use", func(t *testing.T) {
		b := New(t)
		app := NewApp(t, "leak")
		srv := b.TCPEcho(t, netip.AddrPortFrom(b.PublicV4, 0))
		echoTCP(t, srv.Addr)
		web := b.HTTP(t, netip.AddrPortFrom(b.PublicV6, 0))
		if out, err := app.Command(t.Context(), "curl", "-sS", "-m", "5", "-g", "http://"+web.Addr.String()+"/").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		web.WaitEvents(t, 1, 5*time.Second)
		app.StartRole(t, Ident{Cgroup: true}, "udp-echo", "127.0.0.1:0")
	})
	goleak.VerifyNone(t, before)
}
