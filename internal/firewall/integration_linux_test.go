package firewall

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Integration tests: each runs in the device namespace netnstest.Main put
// the test binary in, with real curl and socat as the apps. They share that
// namespace and must not run in parallel.

// TestLiteralAddressOnlyForItsApp: an app reaches the literal addresses of
// its manifest and nothing else; another app cannot reach them; unmanaged
// processes are denied.
func TestLiteralAddressOnlyForItsApp(t *testing.T) {
	for _, byUID := range []bool{true, false} {
		t.Run(map[bool]string{true: "uid", false: "cgroup"}[byUID], func(t *testing.T) {
			b := netnstest.New(t)
			f := newFirewall(t)
			x4, y4, x6 := b.AddPublic(t, false), b.AddPublic(t, false), b.AddPublic(t, true)
			webX4 := b.HTTP(t, netip.AddrPortFrom(x4, 80))
			webY4 := b.HTTP(t, netip.AddrPortFrom(y4, 80))
			webX6 := b.HTTP(t, netip.AddrPortFrom(x6, 80))
			bcast := netip.MustParseAddr("255.255.255.255")
			a := appPolicy{name: "first", app: netnstest.NewApp(t, "first"), byUID: byUID, allow: []netip.Addr{x4, x6, bcast}}
			c := appPolicy{name: "second", app: netnstest.NewApp(t, "second"), byUID: byUID, allow: []netip.Addr{y4}}
			if err := f.Apply(makePolicy([]appPolicy{a, c}), nil); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			wantCurl(t, "first -> its IPv4 literal", run(t, a.cmd(ctx, "curl", curlArgs(webX4.Addr)...), ""), curlOK)
			wantCurl(t, "first -> its IPv6 literal", run(t, a.cmd(ctx, "curl", curlArgs(webX6.Addr)...), ""), curlOK)
			wantCurl(t, "first -> second's address", run(t, a.cmd(ctx, "curl", curlArgs(webY4.Addr)...), ""), curlConnect)
			wantCurl(t, "second -> first's address", run(t, c.cmd(ctx, "curl", curlArgs(webX4.Addr)...), ""), curlConnect)
			wantCurl(t, "second -> first's IPv6", run(t, c.cmd(ctx, "curl", curlArgs(webX6.Addr)...), ""), curlConnect)
			wantCurl(t, "second -> its literal", run(t, c.cmd(ctx, "curl", curlArgs(webY4.Addr)...), ""), curlOK)
			wantCurl(t, "unmanaged -> first's address", run(t, exec.Command("curl", curlArgs(webX4.Addr)...), ""), curlConnect)
			bc := []string{"-u", "-", "UDP-DATAGRAM:255.255.255.255:1824,broadcast"}
			if r := run(t, a.cmd(ctx, "socat", bc...), "bcast\n"); r.code != 0 {
				t.Errorf("first -> broadcast (a literal of its manifest): %v", r)
			}
			if r := run(t, c.cmd(ctx, "socat", bc...), "bcast\n"); r.code == 0 || !strings.Contains(r.out, "not permitted") {
				t.Errorf("second -> broadcast: %v, want EPERM", r)
			}
			if n := len(webX4.Events()); n != 1 {
				t.Errorf("server at first's address saw %d requests, want 1", n)
			}
		})
	}
}

func TestUnmanagedAllow(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	a := appPolicy{name: "app", app: netnstest.NewApp(t, "app"), byUID: true}
	if err := f.Apply(makePolicy([]appPolicy{a}, allowUnmanaged), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wantCurl(t, "unmanaged, allowed by config", run(t, exec.Command("curl", curlArgs(web.Addr)...), ""), curlOK)
	wantCurl(t, "app without the address", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlConnect)
}

// TestDeniedFailsFastAndLogs: a denied TCP connect fails at once with
// "connection refused" and an NFLOG record names the app; a denied UDP send
// fails with EPERM.
func TestDeniedFailsFastAndLogs(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	const group = 110
	logs := startNFLOG(t, group)
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	a := appPolicy{name: "meter", app: netnstest.NewApp(t, "meter"), byUID: true}
	c := appPolicy{name: "camera", app: netnstest.NewApp(t, "camera")}
	if err := f.Apply(makePolicy([]appPolicy{a, c}, withGroup(group)), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, x := range []appPolicy{a, c} {
		r := run(t, x.cmd(ctx, "curl", curlArgs(web.Addr)...), "")
		t.Logf("%s: denied connect: %v", x.name, r)
		wantCurl(t, x.name+" denied", r, curlConnect)
		if !strings.Contains(r.out, "Connection refused") && !strings.Contains(r.out, "Couldn't connect") {
			t.Errorf("%s: curl says %q, want connection refused", x.name, r.out)
		}
		rec := logs.wait(t, "ph deny out "+x.name, 5*time.Second)
		if x.byUID && (rec.UID == nil || *rec.UID != x.app.UID) {
			t.Errorf("%s: NFLOG uid %v, want %d", x.name, rec.UID, x.app.UID)
		}
		if len(rec.Payload) < 20 || netip.AddrFrom4([4]byte(rec.Payload[16:20])) != b.PublicV4 {
			t.Errorf("%s: NFLOG payload is not the denied packet to %s: % x", x.name, b.PublicV4, rec.Payload)
		}
		u := run(t, x.cmd(ctx, "socat", udpSend(netip.AddrPortFrom(b.PublicV4, 9999))...), "hello\n")
		if u.code == 0 || !strings.Contains(u.out, "not permitted") {
			t.Errorf("%s: denied UDP send: %v, want EPERM", x.name, u)
		}
	}
	r := run(t, exec.Command("curl", curlArgs(web.Addr)...), "")
	wantCurl(t, "unmanaged denied", r, curlConnect)
	logs.wait(t, "ph deny out unmanaged", 5*time.Second)
	if n := len(web.Events()); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

// TestAuditMode: audit mode denies nothing and logs what enforce denies.
func TestAuditMode(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	const group = 111
	logs := startNFLOG(t, group)
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	a := appPolicy{name: "meter", app: netnstest.NewApp(t, "meter"), byUID: true}
	if err := f.Apply(makePolicy([]appPolicy{a}, audit, withGroup(group)), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wantCurl(t, "app to an address not in its manifest", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlOK)
	logs.wait(t, "ph audit out meter", 5*time.Second)
	wantCurl(t, "unmanaged", run(t, exec.Command("curl", curlArgs(web.Addr)...), ""), curlOK)
	logs.wait(t, "ph audit out unmanaged", 5*time.Second)
	srv := netnstest.StartRole(t, "tcp-echo", netip.AddrPortFrom(b.DeviceV4, 7000).String())
	r := run(t, b.Command(ctx, "socat", tcpEchoArgs(srv.Addr)...), "inbound\n")
	if r.code != 0 || r.out != "inbound" {
		t.Errorf("inbound connection to an undeclared port: %v", r)
	}
	logs.wait(t, "ph audit in unmanaged", 5*time.Second)
	for _, rec := range logs.recs {
		if strings.HasPrefix(rec.Prefix, "ph deny") {
			t.Errorf("audit mode logged a denial: %q", rec.Prefix)
		}
	}
}

// serverPortCase runs the server-port checks for one identity kind.
func TestServerPorts(t *testing.T) {
	for _, byUID := range []bool{false, true} {
		t.Run(map[bool]string{true: "uid", false: "cgroup"}[byUID], func(t *testing.T) {
			b := netnstest.New(t)
			f := newFirewall(t)
			group := uint16(120)
			if byUID {
				group = 121
			}
			logs := startNFLOG(t, group)
			owner := appPolicy{name: "srv", app: netnstest.NewApp(t, "srv"), byUID: byUID, tcpSrv: []uint16{8080}, udpSrv: []uint16{1824}}
			other := appPolicy{name: "other", app: netnstest.NewApp(t, "other"), byUID: byUID}
			if err := f.Apply(makePolicy([]appPolicy{owner, other}, withGroup(group)), nil); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			tcp := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(b.DeviceV4, port) }

			s := owner.app.StartRole(t, owner.ident(), "tcp-echo", tcp(8080).String())
			r := run(t, b.Command(ctx, "socat", tcpEchoArgs(s.Addr)...), "hi\n")
			if r.code != 0 || r.out != "hi" {
				t.Errorf("declared port, declaring app: %v", r)
			}
			s6 := owner.app.StartRole(t, owner.ident(), "tcp-echo", netip.AddrPortFrom(b.DeviceV6, 8080).String())
			r = run(t, b.Command(ctx, "socat", tcpEchoArgs(s6.Addr)...), "hi6\n")
			if r.code != 0 || r.out != "hi6" {
				t.Errorf("declared port over IPv6: %v", r)
			}
			s.Stop()
			s6.Stop()

			s = owner.app.StartRole(t, owner.ident(), "tcp-echo", tcp(8081).String())
			r = run(t, b.Command(ctx, "socat", tcpEchoArgs(s.Addr)...), "hi\n")
			if r.code == 0 {
				t.Errorf("undeclared port of the app: connected: %v", r)
			}
			logs.wait(t, "ph deny in unmanaged", 5*time.Second)
			s.Stop()

			s = other.app.StartRole(t, other.ident(), "tcp-echo", tcp(8080).String())
			r = run(t, b.Command(ctx, "socat", tcpEchoArgs(s.Addr)...), "hi\n")
			if r.code == 0 {
				t.Errorf("declared port bound by another app: connected: %v", r)
			}
			if n := len(s.Events()); n != 0 && !byUID {
				t.Errorf("other app's listener accepted %d connections", n)
			}
			logs.wait(t, "ph deny in srv", 5*time.Second)
			s.Stop()

			u := owner.app.StartRole(t, owner.ident(), "udp-echo", netip.AddrPortFrom(b.DeviceV4, 1824).String())
			r = run(t, b.Command(ctx, "socat", udpEchoArgs(u.Addr)...), "dgram\n")
			if r.out != "dgram" {
				t.Errorf("declared UDP port, declaring app: %v", r)
			}
			u.Stop()

			u = other.app.StartRole(t, other.ident(), "udp-echo", netip.AddrPortFrom(b.DeviceV4, 1824).String())
			r = run(t, b.Command(ctx, "socat", udpEchoArgs(u.Addr)...), "dgram\n")
			if r.out == "dgram" {
				t.Errorf("declared UDP port bound by another app answered: %v", r)
			}
			// UID apps: the datagram itself reaches the other app's socket (input
			// cannot see the socket's owner); only its answer is stopped.
			t.Logf("UDP datagrams received by the other app's socket: %d", len(u.Events()))
			if !byUID && len(u.Events()) != 0 {
				t.Errorf("cgroup app: another app's UDP socket received %d datagrams", len(u.Events()))
			}
		})
	}
}

// TestDNSRedirect: an app's DNS query to any address lands on its stub;
// the system mark is never redirected; unmanaged queries follow the
// unmanaged policy; a stub takes only redirected queries.
func TestDNSRedirect(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	uidApp := appPolicy{name: "byuid", app: netnstest.NewApp(t, "byuid"), byUID: true, dns: 5301}
	cgApp := appPolicy{name: "bycg", app: netnstest.NewApp(t, "bycg"), dns: 5302}
	upstream := netip.AddrPortFrom(b.PublicV4, 53)
	p := makePolicy([]appPolicy{uidApp, cgApp}, withSystem(policy.AddrRule{Addr: b.PublicV4, Ports: policy.BothProtocols(53)}))
	if err := f.Apply(p, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, x := range []appPolicy{uidApp, cgApp} {
		stub := listenStub(t, x.dns)
		for _, dst := range []netip.AddrPort{upstream, netip.AddrPortFrom(b.PublicV6, 53)} {
			if r := run(t, x.cmd(ctx, "socat", udpSend(dst)...), "query\n"); r.code != 0 {
				t.Errorf("%s: UDP query to %s: %v", x.name, dst, r)
			}
			got := stub.wait(t, 5*time.Second)
			t.Logf("%s: query to %s -> %s", x.name, dst, got)
			lo := "127.0.0.1"
			if dst.Addr().Is6() {
				lo = "[::1]"
			}
			if !strings.HasPrefix(got, fmt.Sprintf("udp %s:%d ", lo, x.dns)) || !strings.HasSuffix(got, "query") {
				t.Errorf("%s: stub got %q", x.name, got)
			}
			r := run(t, x.cmd(ctx, "socat", "-T", "2", "-", "TCP:"+socatAddr(dst)+",connect-timeout=2"), "tcpquery\n")
			if r.code != 0 {
				t.Errorf("%s: TCP query to %s: %v", x.name, dst, r)
			}
			if got := stub.wait(t, 5*time.Second); !strings.HasPrefix(got, "tcp ") || !strings.HasSuffix(got, "tcpquery") {
				t.Errorf("%s: stub got %q over TCP", x.name, got)
			}
		}
	}
	// Direct queries to a stub port are refused, so the port names the app.
	if r := run(t, uidApp.cmd(ctx, "socat", udpSend(netip.MustParseAddrPort("127.0.0.1:5302"))...), "sneaky\n"); r.code == 0 {
		t.Errorf("direct query to another app's stub went out: %v", r)
	}
	// Unmanaged: not redirected, denied by the unmanaged policy.
	if r := run(t, exec.Command("socat", udpSend(upstream)...), "unmanaged\n"); r.code == 0 {
		t.Errorf("unmanaged DNS query went out: %v", r)
	}
	// The system's marked query goes to the real upstream.
	up := b.UDPEcho(t, upstream)
	if err := markedSend(upstream, policy.DefaultSystemMark); err != nil {
		t.Fatalf("system query: %v", err)
	}
	up.WaitEvents(t, 1, 5*time.Second)
}

// TestStaleTableReplaced: a table left by a crashed run, with anything in
// it, is replaced, not trusted.
func TestStaleTableReplaced(t *testing.T) {
	netnstest.RequireDevice(t)
	stale := "table inet pinhole {\n set v4_evil { type ipv4_addr; elements = { 198.18.0.66 }; }\n" +
		" chain output { type filter hook output priority 0; policy accept; }\n chain evil { }\n}\n"
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(stale)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install stale table: %v\n%s", err, out)
	}
	f := newFirewall(t)
	a := appPolicy{name: "app", app: netnstest.NewApp(t, "app"), byUID: true}
	if err := f.Apply(makePolicy([]appPolicy{a}), nil); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(string(out), "evil") || !strings.Contains(string(out), "policy drop") {
		t.Errorf("stale table survived Apply:\n%s", out)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(); err != nil {
		t.Errorf("second Remove (no table): %v", err)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", TableName).CombinedOutput(); err == nil {
		t.Errorf("table still there after Remove:\n%s", out)
	}
}

func TestRefusesInitialNetns(t *testing.T) {
	netnstest.RequireDevice(t)
	// The parent (netnstest's re-exec) is in the machine's own namespace.
	fd, err := syscall.Open(fmt.Sprintf("/proc/%d/ns/net", os.Getppid()), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("cannot open the parent's network namespace: %v", err)
	}
	defer syscall.Close(fd)
	f, err := New(Options{NetNSFd: fd})
	if err == nil {
		f.Close()
		t.Fatal("New accepted the initial network namespace")
	}
	t.Logf("err: %v", err)
	ro, err := New(Options{NetNSFd: fd, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only New in the initial namespace: %v", err)
	}
	defer ro.Close()
	if err := ro.Apply(makePolicy(nil), nil); err != ErrReadOnly {
		t.Errorf("read-only Apply: %v, want ErrReadOnly", err)
	}
}

// TestFailClosed: the process that applied the rules is killed with
// SIGKILL; denied traffic stays denied and an established flow continues,
// even after the element that allowed it expired.
func TestFailClosed(t *testing.T) {
	b := netnstest.New(t)
	a := appPolicy{name: "app", app: netnstest.NewApp(t, "app"), byUID: true}
	echo := b.TCPEcho(t, netip.AddrPortFrom(b.PublicV4, 7))
	other := b.AddPublic(t, false)
	web := b.HTTP(t, netip.AddrPortFrom(other, 80))
	spec, _ := json.Marshal(applySpec{
		Policy:  policySpec{Name: "app", UID: a.app.UID, Group: 112},
		Learned: []Element{{App: "app", Addr: b.PublicV4, Timeout: 3 * time.Second}},
	})
	daemon := netnstest.StartRole(t, "fw-apply", string(spec))
	t.Cleanup(func() {
		ro, err := New(Options{})
		if err == nil {
			ro.Remove()
			ro.Close()
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flow := a.cmd(ctx, "socat", "-", "TCP:"+echo.Addr.String()+",connect-timeout=2")
	in, _ := flow.StdinPipe()
	outPipe, _ := flow.StdoutPipe()
	flow.Stderr = testLogWriter{t}
	if err := flow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(outPipe)
	echoLine := func(s string) error {
		if _, err := io.WriteString(in, s+"\n"); err != nil {
			return err
		}
		got := make(chan bool, 1)
		go func() { got <- lines.Scan() && lines.Text() == s }()
		select {
		case ok := <-got:
			if !ok {
				return fmt.Errorf("echo of %q did not come back", s)
			}
			return nil
		case <-time.After(5 * time.Second):
			return fmt.Errorf("no echo of %q within 5s", s)
		}
	}
	if err := echoLine("before"); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(daemon.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	daemon.Stop()

	wantCurl(t, "denied after the kill", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlConnect)
	wantCurl(t, "unmanaged after the kill", run(t, exec.Command("curl", curlArgs(web.Addr)...), ""), curlConnect)
	ro, err := New(Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	netnstest.WaitFor(t, 10*time.Second, func() bool {
		els, err := ro.Elements("app")
		return err == nil && len(els) == 0
	})
	// The element expired: a new connection is refused, the old flow goes on.
	r := run(t, a.cmd(ctx, "socat", "-T", "2", "-", "TCP:"+echo.Addr.String()+",connect-timeout=2"), "new\n")
	if r.code == 0 {
		t.Errorf("new connection after expiry: %v", r)
	}
	if err := echoLine("after"); err != nil {
		t.Errorf("established flow after kill and expiry: %v", err)
	}
	in.Close()
	flow.Wait()
}

// TestReapplyNoGap re-applies alternating policies 100 times while a probe
// sends continuously: what neither policy allows never gets out, what both
// allow (a learned element re-added by each Apply) always does.
func TestReapplyNoGap(t *testing.T) {
	probeFor := time.Second
	if d, err := time.ParseDuration(os.Getenv("PINHOLE_REAPPLY_FOR")); err == nil {
		probeFor = d
	}
	b := netnstest.New(t)
	f := newFirewall(t)
	never, always := b.AddPublic(t, false), b.AddPublic(t, false)
	onlyA, onlyB := b.AddPublic(t, false), b.AddPublic(t, false)
	app := netnstest.NewApp(t, "probe")
	pa := appPolicy{name: "probe", app: app, byUID: true, allow: []netip.Addr{onlyA}}
	pb := appPolicy{name: "probe", app: app, byUID: true, allow: []netip.Addr{onlyB}}
	learned := []Element{{App: "probe", Addr: always, Timeout: time.Hour}}
	policies := []*policy.Policy{makePolicy([]appPolicy{pa}), makePolicy([]appPolicy{pb})}
	if err := f.Apply(policies[0], learned); err != nil {
		t.Fatal(err)
	}
	logs := startNFLOG(t, 100)
	probe := app.StartRole(t, netnstest.Ident{UID: true}, "udp-probe",
		netip.AddrPortFrom(never, 9).String(), netip.AddrPortFrom(always, 9).String())
	// At least 100 applies, and for at least a second so that the probe
	// sends enough to tell.
	start := time.Now()
	applies := 0
	for ; applies < 100 || time.Since(start) < probeFor; applies++ {
		if err := f.Apply(policies[(applies+1)%2], learned); err != nil {
			t.Fatalf("apply %d: %v", applies, err)
		}
	}
	took := time.Since(start)
	probe.Stop()
	ev := probe.Events()
	if len(ev) != 1 {
		t.Fatalf("probe events: %v", ev)
	}
	var neverOK, neverFail, alwaysOK, alwaysFail int
	fmt.Sscan(ev[0].Detail, &neverOK, &neverFail, &alwaysOK, &alwaysFail)
	t.Logf("probe: %s", ev[0].Detail)
	t.Logf("%d applies in %v; probe: never allowed %d out / %d denied, always allowed %d out / %d denied",
		applies, took, neverOK, neverFail, alwaysOK, alwaysFail)
	if neverOK != 0 {
		t.Errorf("%d datagrams to an address neither policy allows got out", neverOK)
	}
	if alwaysFail != 0 {
		t.Errorf("%d datagrams to an address both policies allow were denied", alwaysFail)
		logs.mu.Lock()
		for _, r := range logs.recs {
			if len(r.Payload) >= 20 && netip.AddrFrom4([4]byte(r.Payload[16:20])) == always {
				t.Logf("NFLOG %q for the always-allowed address", r.Prefix)
			}
		}
		logs.mu.Unlock()
	}
	if neverFail < 100 || alwaysOK < 100 {
		t.Errorf("probe sent too little to tell: %s", ev[0].Detail)
	}
}

// TestManyElements: 100,000 elements in chunks all land, by Allow and by
// Apply (one transaction), read back from the kernel.
func TestManyElements(t *testing.T) {
	netnstest.RequireDevice(t)
	f := newFirewall(t)
	a := appPolicy{name: "bulk", app: netnstest.NewApp(t, "bulk"), byUID: true}
	p := makePolicy([]appPolicy{a})
	if err := f.Apply(p, nil); err != nil {
		t.Fatal(err)
	}
	const n = 100000
	elems := make([]Element, 0, n)
	for i := range n {
		e := Element{App: "bulk", Timeout: time.Hour}
		switch i % 4 {
		case 0:
			e.Addr = netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		case 1:
			e.Addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		case 2:
			e.Addr, e.Proto, e.Port = netip.AddrFrom4([4]byte{101, byte(i >> 16), byte(i >> 8), byte(i)}), policy.TCP, 443
		case 3:
			e.Addr, e.Proto, e.Port = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), policy.UDP, 53
		}
		elems = append(elems, e)
	}
	count := func() map[setKind]int {
		got, err := f.Elements("bulk")
		if err != nil {
			t.Fatal(err)
		}
		c := map[setKind]int{}
		for _, e := range got {
			c[e.kindOf()]++
		}
		return c
	}
	want := map[setKind]int{setV4: n / 4, setV6: n / 4, setV4Port: n / 4, setV6Port: n / 4}
	start := time.Now()
	if err := f.Allow(elems); err != nil {
		t.Fatal(err)
	}
	t.Logf("Allow of %d elements: %v", n, time.Since(start))
	if got := count(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after Allow: %v, want %v", got, want)
	}
	start = time.Now()
	if err := f.Apply(p, elems); err != nil {
		t.Fatal(err)
	}
	t.Logf("Apply with %d learned elements: %v", n, time.Since(start))
	if got := count(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after Apply: %v, want %v", got, want)
	}
	if err := f.Revoke(elems[:n/2]); err != nil {
		t.Fatal(err)
	}
	want = map[setKind]int{setV4: n / 8, setV6: n / 8, setV4Port: n / 8, setV6Port: n / 8}
	if got := count(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after Revoke of half: %v, want %v", got, want)
	}
}

// TestElementTimeout: an element with a timeout expires; a refresh with
// the same timeout extends it; literals are never replaced or revoked.
func TestElementTimeout(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	literal := b.AddPublic(t, false)
	a := appPolicy{name: "dyn", app: netnstest.NewApp(t, "dyn"), byUID: true, allow: []netip.Addr{literal}}
	if err := f.Apply(makePolicy([]appPolicy{a}), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wantCurl(t, "before Allow", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlConnect)
	e := Element{App: "dyn", Addr: b.PublicV4, Timeout: 3 * time.Second}
	if err := f.Allow([]Element{e, e}); err != nil {
		t.Fatal(err)
	}
	wantCurl(t, "after Allow", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlOK)
	left := func() time.Duration {
		els, err := f.Elements("dyn")
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range els {
			if x.Addr == b.PublicV4 {
				return x.Timeout
			}
		}
		return 0
	}
	netnstest.WaitFor(t, 5*time.Second, func() bool { return left() < 2*time.Second })
	if err := f.Allow([]Element{e}); err != nil {
		t.Fatal(err)
	}
	if l := left(); l < 2500*time.Millisecond {
		t.Errorf("after refresh %v left, want close to 3s", l)
	}
	netnstest.WaitFor(t, 10*time.Second, func() bool { return left() == 0 })
	wantCurl(t, "after expiry", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlConnect)

	// A literal stays permanent whatever Allow and Revoke say.
	lit := Element{App: "dyn", Addr: literal, Timeout: time.Second}
	if err := f.Allow([]Element{lit}); err != nil {
		t.Fatal(err)
	}
	if err := f.Revoke([]Element{lit}); err != nil {
		t.Fatal(err)
	}
	gone := Element{App: "dyn", Addr: b.PublicV6}
	if err := f.Revoke([]Element{gone, gone}); err != nil {
		t.Errorf("Revoke of an absent element, twice: %v", err)
	}
	els, err := f.Elements("dyn")
	if err != nil {
		t.Fatal(err)
	}
	if len(els) != 1 || els[0].Addr != literal || els[0].Timeout != 0 {
		t.Errorf("elements after Allow/Revoke of a literal: %v, want the permanent literal only", els)
	}
	if err := f.Allow([]Element{{App: "nobody", Addr: literal}}); err == nil {
		t.Error("Allow for an unknown app: no error")
	}
}

// TestSetCgroupID: an app whose cgroup was not there at Apply is
// unmanaged; SetCgroupID dispatches it again.
func TestSetCgroupID(t *testing.T) {
	b := netnstest.New(t)
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	a := appPolicy{name: "late", app: netnstest.NewApp(t, "late"), allow: []netip.Addr{b.PublicV4}, dns: 5310}
	netnstest.RequireDevice(t)
	f, err := New(Options{CgroupID: func(string) (uint64, error) { return 0, os.ErrNotExist }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Remove(); f.Close() })
	if err := f.Apply(makePolicy([]appPolicy{a}, allowUnmanaged), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stub := listenStub(t, 5310)
	// Unmanaged (allowed) until the id is known: the query goes out, not to the stub.
	up := b.UDPEcho(t, netip.AddrPortFrom(b.PublicV4, 53))
	run(t, a.cmd(ctx, "socat", udpSend(up.Addr)...), "q1\n")
	up.WaitEvents(t, 1, 5*time.Second)
	select {
	case m := <-stub.got:
		t.Errorf("query reached the stub before SetCgroupID: %s", m)
	default:
	}
	if err := f.SetCgroupID("late", a.app.CgroupID); err != nil {
		t.Fatal(err)
	}
	run(t, a.cmd(ctx, "socat", udpSend(netip.AddrPortFrom(b.PublicV4, 53))...), "q2\n")
	if got := stub.wait(t, 5*time.Second); !strings.HasSuffix(got, "q2") {
		t.Errorf("stub got %q", got)
	}
	wantCurl(t, "after SetCgroupID", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlOK)
	// A recreated cgroup: the old id no longer dispatches, the new one does.
	if err := f.SetCgroupID("late", a.app.CgroupID+1000); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("nft", "list", "set", "inet", TableName, "cg_late").CombinedOutput()
	if strings.Contains(string(out), strconv.FormatUint(a.app.CgroupID, 10)) ||
		!strings.Contains(string(out), strconv.FormatUint(a.app.CgroupID+1000, 10)) {
		t.Errorf("cgroup id set after a second SetCgroupID:\n%s", out)
	}
	if err := f.SetCgroupID("nosuch", 1); err == nil {
		t.Error("SetCgroupID of an unknown app: no error")
	}
}

// TestRulesets: counters and comments come back per hook; the dump is
// logged for the documentation.
func TestRulesets(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	a := appPolicy{name: "counted", app: netnstest.NewApp(t, "counted"), byUID: true, allow: []netip.Addr{b.PublicV4}, dns: 5320, tcpSrv: []uint16{8080}}
	c := appPolicy{name: "cgapp", app: netnstest.NewApp(t, "cgapp"), dns: 5321, udpSrv: []uint16{1824}}
	p := makePolicy([]appPolicy{a, c}, withSystem(policy.AddrRule{Addr: b.PublicV4, Ports: policy.BothProtocols(53)}),
		func(p *policy.Policy) {
			p.ServiceLink = policy.ServiceLink{Enabled: true, Interface: "azspheresvc", Prefix: netip.MustParsePrefix("192.168.35.0/24"), APIPort: 443}
		})
	if err := f.Apply(p, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		wantCurl(t, "allowed", run(t, a.cmd(ctx, "curl", curlArgs(web.Addr)...), ""), curlOK)
	}
	rs, err := f.Rulesets()
	if err != nil {
		t.Fatal(err)
	}
	var hooks []string
	found := false
	for _, r := range rs {
		hooks = append(hooks, r.Hook+"/"+r.Type)
		if !r.IsValid {
			t.Errorf("ruleset %s/%s not fully decoded", r.Hook, r.Type)
		}
		for _, x := range r.Rules {
			if x.Comment == "" {
				t.Errorf("rule without comment: %+v", x)
			}
			if x.Chain == "out_counted" && x.Comment == "allowed IPv4 destinations" {
				found = true
				if x.Packets < 3 || x.Bytes == 0 || x.App != "counted" || x.Set != "v4_counted" || x.Action != "accept" {
					t.Errorf("allowed rule: %+v, want >= 3 packets, app counted, set v4_counted", x)
				}
			}
			if x.Chain == "output" && x.Comment == "established and related" && (x.Packets == 0 || x.State != "established,related") {
				t.Errorf("established rule: %+v", x)
			}
		}
	}
	if want := "INPUT/filter FORWARD/filter OUTPUT/filter OUTPUT/nat"; strings.Join(hooks, " ") != want {
		t.Errorf("hooks %q, want %q", strings.Join(hooks, " "), want)
	}
	if !found {
		t.Error("no rule for the app's allowed IPv4 destinations")
	}
	js, _ := json.MarshalIndent(rs[2].Rules[:2], "", "  ")
	t.Logf("OUTPUT rules, JSON excerpt:\n%s", js)
	out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
	t.Logf("nft list ruleset:\n%s", out)
}

// TestUIDServerSynCookies pins a documented limit: with SYN cookies the
// SYN-ACK has no socket, so the owner check cannot pass and a UID app's
// listener refuses connections (fail closed). Cgroup apps are unaffected.
func TestUIDServerSynCookies(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	const knob = "/proc/sys/net/ipv4/tcp_syncookies"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knob, []byte("2"), 0); err != nil { // cookies for every SYN
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(knob, old, 0) })
	u := appPolicy{name: "byuid", app: netnstest.NewApp(t, "byuid"), byUID: true, tcpSrv: []uint16{8080}}
	c := appPolicy{name: "bycg", app: netnstest.NewApp(t, "bycg"), tcpSrv: []uint16{8081}}
	if err := f.Apply(makePolicy([]appPolicy{u, c}), nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	su := u.app.StartRole(t, u.ident(), "tcp-echo", netip.AddrPortFrom(b.DeviceV4, 8080).String())
	if r := run(t, b.Command(ctx, "socat", tcpEchoArgs(su.Addr)...), "hi\n"); r.code == 0 {
		t.Errorf("uid app listener with SYN cookies: connected (%v); the doc says it fails closed", r)
	}
	sc := c.app.StartRole(t, c.ident(), "tcp-echo", netip.AddrPortFrom(b.DeviceV4, 8081).String())
	if r := run(t, b.Command(ctx, "socat", tcpEchoArgs(sc.Addr)...), "hi\n"); r.code != 0 || r.out != "hi" {
		t.Errorf("cgroup app listener with SYN cookies: %v", r)
	}
}

// TestRejectedTransactionKeepsTable: when the kernel rejects a transaction,
// the error names the message that failed and nothing of it is applied.
func TestRejectedTransactionKeepsTable(t *testing.T) {
	netnstest.RequireDevice(t)
	f := newFirewall(t)
	a := appPolicy{name: "app", app: netnstest.NewApp(t, "app"), byUID: true, allow: []netip.Addr{netip.MustParseAddr("198.18.0.10")}}
	if err := f.Apply(makePolicy([]appPolicy{a}), nil); err != nil {
		t.Fatal(err)
	}
	before, err := f.Rulesets()
	if err != nil {
		t.Fatal(err)
	}
	tx := newTxn()
	if err := addAppElements(tx, f.sets, []Element{{App: "app", Addr: netip.MustParseAddr("198.18.0.11")}}); err != nil {
		t.Fatal(err)
	}
	bogus := &nftables.Rule{Table: table, Chain: &nftables.Chain{Name: "no_such_chain", Table: table}, Exprs: []expr.Any{counter()}}
	if err := tx.do("add rule to no_such_chain", func(c *nftables.Conn) error { c.AddRule(bogus); return nil }); err != nil {
		t.Fatal(err)
	}
	err = f.c.commit(tx)
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "no_such_chain") {
		t.Fatalf("commit: %v, want ENOENT naming the rule", err)
	}
	t.Logf("err: %v", err)
	els, err := f.Elements("app")
	if err != nil {
		t.Fatal(err)
	}
	if len(els) != 1 {
		t.Errorf("elements after a rejected transaction: %v, want only the literal", els)
	}
	after, err := f.Rulesets()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || len(after[2].Rules) != len(before[2].Rules) {
		t.Errorf("rulesets changed after a rejected transaction")
	}
	// The socket is clean for the next transaction.
	if err := f.Allow([]Element{{App: "app", Addr: netip.MustParseAddr("198.18.0.12"), Timeout: time.Minute}}); err != nil {
		t.Fatalf("Allow after a rejected transaction: %v", err)
	}
}

// TestConcurrentUse runs Apply, Allow, Revoke, Elements and Rulesets from
// several goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	netnstest.RequireDevice(t)
	f := newFirewall(t)
	a := appPolicy{name: "app", app: netnstest.NewApp(t, "app"), byUID: true}
	p := makePolicy([]appPolicy{a})
	if err := f.Apply(p, nil); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				e := Element{App: "app", Addr: netip.AddrFrom4([4]byte{198, 18, byte(g), byte(i)}), Timeout: time.Minute}
				var err error
				switch i % 5 {
				case 0:
					err = f.Apply(p, []Element{e})
				case 1, 2:
					err = f.Allow([]Element{e})
				case 3:
					err = f.Revoke([]Element{e})
				case 4:
					_, err = f.Elements("app")
					if err == nil {
						_, err = f.Rulesets()
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("concurrent use did not finish within 60s")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMetricsListen: a metrics address off loopback is reachable from the
// network only when the policy names it, and only on that port.
func TestMetricsListen(t *testing.T) {
	b := netnstest.New(t)
	f := newFirewall(t)
	ctx := context.Background()
	metrics := netip.AddrPortFrom(b.DeviceV4, 9430)
	srv := netnstest.StartRole(t, "tcp-echo", metrics.String())
	other := netnstest.StartRole(t, "tcp-echo", netip.AddrPortFrom(b.DeviceV4, 9431).String())

	if err := f.Apply(makePolicy(nil), nil); err != nil {
		t.Fatal(err)
	}
	if r := run(t, b.Command(ctx, "socat", tcpEchoArgs(srv.Addr)...), "hi\n"); r.code == 0 {
		t.Errorf("metrics port without metrics_listen: connected (%v), want dropped", r)
	}
	if err := f.Apply(makePolicy(nil, func(p *policy.Policy) { p.MetricsListen = metrics }), nil); err != nil {
		t.Fatal(err)
	}
	if r := run(t, b.Command(ctx, "socat", tcpEchoArgs(srv.Addr)...), "hi\n"); r.code != 0 || r.out != "hi" {
		t.Errorf("metrics port with metrics_listen %s: %v, want an echo", metrics, r)
	}
	if r := run(t, b.Command(ctx, "socat", tcpEchoArgs(other.Addr)...), "hi\n"); r.code == 0 {
		t.Errorf("port next to the metrics port: connected (%v), want dropped", r)
	}
}
