package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/cli"
	"github.com/pinhole-net/pinhole/internal/netnstest"
)

// envPinholed makes the test binary run as pinholed (Main) instead of its
// tests, so the tests start the daemon as a real process.
const envPinholed = "PINHOLE_DAEMONTEST_PINHOLED"

func TestMain(m *testing.M) {
	if os.Getenv(envPinholed) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	netnstest.RegisterRole("tcp-hold", tcpHold)
	netnstest.RegisterRole("probe", probe)
	netnstest.Main(m)
}

// tcpHold connects to args[0] and keeps one connection busy: a line every
// 100 ms, each echo reported as an "echo" event, a failure as "broken".
func tcpHold(ctx context.Context, args []string, r *netnstest.Reporter) error {
	c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	r.Ready(c.LocalAddr().String())
	rd := bufio.NewReader(c)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			r.Event(netnstest.Event{Kind: "broken", Detail: err.Error()})
			return nil
		}
		if _, err := rd.ReadString('\n'); err != nil {
			r.Event(netnstest.Event{Kind: "broken", Detail: err.Error()})
			return nil
		}
		r.Event(netnstest.Event{Kind: "echo"})
	}
}

// probe tries TCP connections to each of args over and over; a connection
// that succeeds is an "open" event, and every second a "tick" says how many
// tries were made.
func probe(ctx context.Context, args []string, r *netnstest.Reporter) error {
	r.Ready("probing")
	tries := 0
	last := time.Now()
	for ctx.Err() == nil {
		for _, target := range args {
			c, err := net.DialTimeout("tcp", target, 300*time.Millisecond)
			tries++
			if err == nil {
				r.Event(netnstest.Event{Kind: "open", Detail: target})
				c.Close()
			}
		}
		if time.Since(last) >= time.Second {
			r.Event(netnstest.Event{Kind: "tick", Detail: strconv.Itoa(tries)})
			last = time.Now()
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// proc is a pinholed process started by a test.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    *syncBuffer
	notify *notifyListener
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// notifyListener plays systemd's side of sd_notify.
type notifyListener struct {
	conn *net.UnixConn
	path string
	mu   sync.Mutex
	msgs []string
}

func newNotifyListener(t testing.TB) *notifyListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyListener{conn: c, path: path}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			m, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.Split(string(buf[:m]), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

// count returns how many messages equal to s arrived.
func (n *notifyListener) count(s string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m == s {
			c++
		}
	}
	return c
}

// startPinholed runs pinholed with the config and waits for READY=1.
func startPinholed(t testing.TB, cfgPath string, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// PINHOLED_BIN runs a built pinholed instead of the test binary (for
	// measurements of the real binary).
	if bin := os.Getenv("PINHOLED_BIN"); bin != "" {
		exe = bin
	}
	p := &proc{t: t, out: &syncBuffer{}, notify: newNotifyListener(t), done: make(chan struct{})}
	p.cmd = exec.Command(exe, append([]string{"--config", cfgPath}, args...)...)
	p.cmd.Env = append(os.Environ(), envPinholed+"=1", "NOTIFY_SOCKET="+p.notify.path)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in pinholed")
		}
		if t.Failed() {
			t.Logf("pinholed output:\n%s", p.out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for p.notify.count("READY=1") == 0 {
		select {
		case <-p.done:
			t.Fatalf("pinholed exited before it was ready: %v\n%s", p.err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pinholed not ready after 30s:\n%s", p.out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// stop sends SIGTERM and waits; it returns the exit error.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("pinholed did not stop within 15s of SIGTERM")
	}
	return p.err
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// runCLI runs the pinhole command in-process and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// world is the test bed of the end-to-end tests: an internet namespace with
// an upstream dnsmasq and web servers, two apps and their config.
type world struct {
	bed          *netnstest.Bed
	alpha, beta  *netnstest.App
	dir, cfgPath string
	sock         string
	metricsAddr  string
	dnsAddr      netip.Addr
	// www and newHost are alpha's hosts (www.alpha.test, new.alpha.test),
	// betaHost is beta.test, which beta may reach on port 443 only.
	www, newHost, betaHost netip.Addr
}

const alphaManifest = `{"SchemaVersion": 1, "Name": "Alpha", "ComponentId": "3f1c2a8e-6b0d-4c57-9e21-5a7d4b9c0e11",
 "EntryPoint": "/bin/alpha", "CmdArgs": [], "ApplicationType": "Default",
 "Capabilities": {"AllowedConnections": [%s]}}`

const betaManifest = `{"SchemaVersion": 1, "Name": "Beta", "ComponentId": "3f1c2a8e-6b0d-4c57-9e21-5a7d4b9c0e12",
 "EntryPoint": "/bin/beta", "CmdArgs": [], "ApplicationType": "Default",
 "Capabilities": {"AllowedConnections": ["beta.test:443"]}}`

func newWorld(t *testing.T) *world {
	t.Helper()
	netnstest.RequireDevice(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("needs dnsmasq (Debian dnsmasq-base)")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	w := &world{bed: netnstest.New(t), dir: t.TempDir()}
	w.alpha = netnstest.NewApp(t, "alpha")
	w.beta = netnstest.NewApp(t, "beta")
	w.dnsAddr = w.bed.PublicV4
	w.www = w.bed.AddPublic(t, false)
	w.newHost = w.bed.AddPublic(t, false)
	w.betaHost = w.bed.AddPublic(t, false)
	for _, a := range []netip.Addr{w.www, w.newHost, w.betaHost} {
		w.bed.HTTP(t, netip.AddrPortFrom(a, 80))
	}
	w.bed.HTTP(t, netip.AddrPortFrom(w.betaHost, 443))
	w.bed.TCPEcho(t, netip.AddrPortFrom(w.www, 7))
	w.startDNS(t)

	w.sock = filepath.Join(w.dir, "run", "api.sock")
	w.metricsAddr = freeLoopbackPort(t)
	w.writeAlpha(t, `"www.alpha.test"`)
	writeFile(t, filepath.Join(w.dir, "beta.json"), betaManifest)
	w.cfgPath = filepath.Join(w.dir, "pinhole.yaml")
	writeFile(t, w.cfgPath, fmt.Sprintf(`profile: {name: minimal}
dns:
  upstreams: [%s]
api:
  socket: %s
  group: ""
  metrics_listen: %s
state_dir: %s
log: {level: debug}
apps:
  - name: alpha
    manifest: alpha.json
    uid: %d
  - name: beta
    manifest: beta.json
    cgroup: %s
`, w.dnsAddr, w.sock, w.metricsAddr, filepath.Join(w.dir, "state"), w.alpha.UID, w.beta.Cgroup))
	t.Cleanup(func() {
		// Leave the device namespace without pinhole's table for the next
		// test, through pinholed --uninstall.
		var out, errb bytes.Buffer
		if code := Main([]string{"--uninstall", "--config", w.cfgPath}, &out, &errb); code != ExitOK {
			t.Errorf("pinholed --uninstall: exit %d: %s", code, errb.String())
		}
	})
	return w
}

func (w *world) writeAlpha(t *testing.T, conns string) {
	t.Helper()
	writeFile(t, filepath.Join(w.dir, "alpha.json"), fmt.Sprintf(alphaManifest, conns))
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDNS runs dnsmasq in the internet namespace as the upstream resolver
// and waits until it answers.
func (w *world) startDNS(t *testing.T) {
	t.Helper()
	args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=" + w.dnsAddr.String(), "--port=53", "--local-ttl=600",
		"--pid-file=" + filepath.Join(t.TempDir(), "dnsmasq.pid"), "--log-facility=-", "--log-queries",
		"--host-record=www.alpha.test," + w.www.String(),
		"--host-record=new.alpha.test," + w.newHost.String(),
		"--host-record=beta.test," + w.betaHost.String(),
	}
	cmd := w.bed.Command(context.Background(), "dnsmasq", args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", out.String())
		}
	})
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("www.alpha.test.", dns.TypeA)
	netnstest.WaitFor(t, 10*time.Second, func() bool {
		r, _, err := c.Exchange(m, netip.AddrPortFrom(w.dnsAddr, 53).String())
		return err == nil && len(r.Answer) == 1
	})
}

// curl runs curl as an app and returns the HTTP status (0 when it failed)
// and curl's exit code.
func curl(t *testing.T, app *netnstest.App, url string) (status string, exit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return runCurl(t, app.Command(ctx, "curl", curlArgs(url)...), app.Name)
}

func curlArgs(url string) []string {
	return []string{"-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url}
}

func runCurl(t *testing.T, cmd *exec.Cmd, who string) (status string, exit int) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		t.Logf("%s as %s: exit %d: %s", strings.Join(cmd.Args, " "), who, ee.ExitCode(), strings.TrimSpace(stderr.String()))
		return string(out), ee.ExitCode()
	}
	t.Fatalf("curl: %v", err)
	return "", -1
}

// client returns an API client of the world's pinholed.
func (w *world) client() *api.Client { return api.NewUnixClient(w.sock) }

// metric returns the value of the sample of name whose labels include
// want, from Prometheus text; -1 if there is none.
func metric(text, name string, want map[string]string) float64 {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			for _, kv := range strings.Split(rest[1:end], ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = strings.Trim(v, `"`)
			}
			rest = rest[end+1:]
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			return f
		}
	}
	return -1
}
