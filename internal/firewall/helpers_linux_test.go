package firewall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func TestMain(m *testing.M) {
	netnstest.RegisterRole("fw-apply", roleApply)
	netnstest.RegisterRole("udp-probe", roleUDPProbe)
	netnstest.Main(m)
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newFirewall opens a Firewall on the device namespace and removes the table
// when the test ends.
func newFirewall(t *testing.T) *Firewall {
	t.Helper()
	netnstest.RequireDevice(t)
	f, err := New(Options{Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("nft", "list", "table", "inet", TableName).CombinedOutput()
			t.Logf("table at failure:\n%s", out)
		}
		if err := f.Remove(); err != nil {
			t.Errorf("remove: %v", err)
		}
		f.Close()
	})
	return f
}

// appPolicy describes a test app; allow are literal addresses (any port).
type appPolicy struct {
	name    string
	app     *netnstest.App
	byUID   bool
	dns     uint16
	allow   []netip.Addr
	tcpSrv  []uint16
	udpSrv  []uint16
	cgLevel int
}

func (a appPolicy) compile() *policy.App {
	pa := &policy.App{Name: a.name, DNSPort: a.dns, TCPServerPorts: a.tcpSrv, UDPServerPorts: a.udpSrv}
	if a.byUID {
		pa.Identity = policy.Identity{Kind: policy.ByUID, UID: a.app.UID}
	} else {
		pa.Identity = policy.Identity{Kind: policy.ByCgroup, Cgroup: a.app.Cgroup}
	}
	for _, ad := range a.allow {
		pa.Addrs = append(pa.Addrs, policy.AddrRule{Addr: ad, Source: "test"})
	}
	return pa
}

// ident is the part of the app's identity its processes get: the UID for a
// UID app, the cgroup for a cgroup app.
func (a appPolicy) ident() netnstest.Ident {
	return netnstest.Ident{UID: a.byUID, Cgroup: !a.byUID}
}

func (a appPolicy) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	return a.app.CommandAs(ctx, a.ident(), name, args...)
}

type polOpt func(*policy.Policy)

func audit(p *policy.Policy)          { p.Mode = policy.ModeAudit }
func allowUnmanaged(p *policy.Policy) { p.Unmanaged = policy.UnmanagedAllow }
func withGroup(g uint16) polOpt       { return func(p *policy.Policy) { p.NFLOGGroup = g } }
func withSystem(addrs ...policy.AddrRule) polOpt {
	return func(p *policy.Policy) {
		p.System = &policy.App{Name: policy.SystemName, Identity: policy.Identity{Kind: policy.ByMark, Mark: p.SystemMark}, Addrs: addrs}
	}
}

func makePolicy(apps []appPolicy, opts ...polOpt) *policy.Policy {
	p := &policy.Policy{
		Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedDeny, SystemMark: policy.DefaultSystemMark,
		NFLOGGroup: 100, LogRate: 1000, LogBurst: 1000,
	}
	for _, a := range apps {
		p.Apps = append(p.Apps, a.compile())
	}
	for _, o := range opts {
		o(p)
	}
	return policy.Finish(p)
}

// result of a client run.
type result struct {
	code int
	out  string
	took time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v: %s", r.code, r.took.Round(time.Millisecond), r.out)
}

func run(t *testing.T, cmd *exec.Cmd, stdin string) result {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = strings.NewReader(stdin)
	start := time.Now()
	err := cmd.Run()
	r := result{out: strings.TrimSpace(out.String()), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", cmd, err)
	}
	return r
}

func url(ap netip.AddrPort) string { return "http://" + ap.String() + "/" }

// curlArgs makes one HTTP request with a 3 s overall limit.
func curlArgs(ap netip.AddrPort) []string {
	return []string{"-sS", "-m", "3", "-o", "/dev/null", url(ap)}
}

// Curl exit codes.
const (
	curlOK      = 0
	curlConnect = 7 // couldn't connect: refused, unreachable
	curlTimeout = 28
)

func wantCurl(t *testing.T, what string, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: curl %v, want exit %d", what, r, code)
	}
}

// nflogReader collects NFLOG records of one group in the device namespace.
type nflogReader struct {
	mu     sync.Mutex
	recs   []nflogRec
	notify chan struct{}
}

type nflogRec struct {
	Prefix  string
	UID     *uint32
	Payload []byte
}

func startNFLOG(t *testing.T, group uint16) *nflogReader {
	t.Helper()
	nf, err := nflog.Open(&nflog.Config{Group: group, Copymode: nflog.CopyPacket, Bufsize: 256})
	if err != nil {
		t.Fatalf("open nflog group %d: %v", group, err)
	}
	r := &nflogReader{notify: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	err = nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		rec := nflogRec{}
		if a.Prefix != nil {
			rec.Prefix = strings.TrimRight(*a.Prefix, "\x00 ")
		}
		if a.UID != nil {
			u := *a.UID
			rec.UID = &u
		}
		if a.Payload != nil {
			rec.Payload = bytes.Clone(*a.Payload) // the library reuses the buffer
		}
		r.mu.Lock()
		r.recs = append(r.recs, rec)
		close(r.notify)
		r.notify = make(chan struct{})
		r.mu.Unlock()
		return 0
	}, func(error) int { return 0 })
	if err != nil {
		cancel()
		nf.Close()
		t.Fatalf("register nflog hook: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		nf.Close()
	})
	return r
}

// wait returns the first record with prefix, waiting up to timeout.
func (r *nflogReader) wait(t *testing.T, prefix string, timeout time.Duration) nflogRec {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for _, rec := range r.recs {
			if rec.Prefix == prefix {
				r.mu.Unlock()
				return rec
			}
		}
		ch := r.notify
		seen := len(r.recs)
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no NFLOG record %q within %v (%d others)", prefix, timeout, seen)
			return nflogRec{}
		}
	}
}

// udpSend sends one datagram with socat; socat exits non-zero when the
// firewall rejects the send (EPERM).
func udpSend(ap netip.AddrPort) []string {
	return []string{"-u", "-", "UDP-SENDTO:" + socatAddr(ap)}
}

func socatAddr(ap netip.AddrPort) string {
	if ap.Addr().Is6() {
		return fmt.Sprintf("[%s]:%d", ap.Addr(), ap.Port())
	}
	return ap.String()
}

// tcpEchoClient connects from the internet side with socat, sends a line and
// expects it back; connect-timeout 1 s.
func tcpEchoArgs(ap netip.AddrPort) []string {
	return []string{"-T", "2", "-", "TCP:" + socatAddr(ap) + ",connect-timeout=1"}
}

// udpEchoArgs sends a datagram from the internet side and waits 1 s for
// the echo.
func udpEchoArgs(ap netip.AddrPort) []string {
	return []string{"-T", "1", "-", "UDP:" + socatAddr(ap)}
}

// listen starts UDP and TCP listeners on the loopback stub port in the
// test process and reports what arrives.
type stubListener struct {
	got chan string
}

func listenStub(t *testing.T, port uint16) *stubListener {
	t.Helper()
	s := &stubListener{got: make(chan string, 16)}
	for _, a := range []string{"127.0.0.1", "::1"} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(a), port)
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 512)
			for {
				n, from, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				s.got <- fmt.Sprintf("udp %s from %s: %s", ap, from, strings.TrimSpace(string(buf[:n])))
			}
		}()
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 512)
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, _ := c.Read(buf)
				s.got <- fmt.Sprintf("tcp %s from %s: %s", ap, c.RemoteAddr(), strings.TrimSpace(string(buf[:n])))
				c.Close()
			}
		}()
	}
	return s
}

func (s *stubListener) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case m := <-s.got:
		return m
	case <-time.After(timeout):
		t.Fatalf("nothing reached the stub within %v", timeout)
		return ""
	}
}

// markedDial sends a UDP datagram from the test process with the system
// mark, as pinholed does for its upstream queries.
func markedSend(ap netip.AddrPort, mark uint32) error {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("udp", ap.String())
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("marked\n"))
	return err
}

// roleApply is a helper process that applies a policy and then waits: the
// fail-closed test kills it with SIGKILL. args[0] is a JSON applySpec.
type applySpec struct {
	Policy  policySpec
	Learned []Element
}

// policySpec is the part of a policy the helper needs, in JSON.
type policySpec struct {
	Name  string
	UID   uint32
	Allow []netip.Addr
	Group uint16
}

func roleApply(ctx context.Context, args []string, r *netnstest.Reporter) error {
	var spec applySpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return err
	}
	a := &policy.App{Name: spec.Policy.Name, Identity: policy.Identity{Kind: policy.ByUID, UID: spec.Policy.UID}}
	for _, ad := range spec.Policy.Allow {
		a.Addrs = append(a.Addrs, policy.AddrRule{Addr: ad})
	}
	p := policy.Finish(&policy.Policy{Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedDeny,
		SystemMark: policy.DefaultSystemMark, NFLOGGroup: spec.Policy.Group, Apps: []*policy.App{a}})
	f, err := New(Options{})
	if err != nil {
		return err
	}
	if err := f.Apply(p, spec.Learned); err != nil {
		return err
	}
	r.Ready(fmt.Sprint(os.Getpid()))
	<-ctx.Done()
	return nil
}

// roleUDPProbe sends datagrams alternately to args[0] (which no policy
// allows) and args[1] (which every policy allows), one new socket per
// datagram so that conntrack sees each as new and the ruleset decides every
// one, about 1000 pairs a second, until stopped; then it reports how many
// sends the firewall let out.
func roleUDPProbe(ctx context.Context, args []string, r *netnstest.Reporter) error {
	var dst [2]*net.UDPAddr
	for i := range dst {
		ap, err := netip.ParseAddrPort(args[i])
		if err != nil {
			return err
		}
		dst[i] = net.UDPAddrFromAddrPort(ap)
	}
	var ok, fail [2]int
	errs := map[string]int{}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	r.Ready("probing")
	for ctx.Err() == nil {
		for i, d := range dst {
			c, err := net.DialUDP("udp", nil, d)
			if err != nil {
				return err
			}
			if _, err := c.Write([]byte("probe")); err != nil {
				fail[i]++
				if i == 1 {
					errs[err.Error()]++
				}
			} else {
				ok[i]++
			}
			c.Close()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	r.Event(netnstest.Event{Kind: "probe", Detail: fmt.Sprintf("%d %d %d %d %v", ok[0], fail[0], ok[1], fail[1], errs)})
	return nil
}
