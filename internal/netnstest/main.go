package netnstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/netns"
)

// Environment variables between the test binary and its re-executions.
const (
	envDevice = "PINHOLE_NETNSTEST_DEVICE" // "1" in the re-executed test binary
	envRole   = "PINHOLE_NETNSTEST_ROLE"   // name of the helper role to serve
)

// RoleFunc is a helper role: a program the test binary runs instead of its
// tests, for instance a server in the internet namespace. It calls r.Ready
// once it can be used and returns when ctx ends (the bed stopped it).
type RoleFunc func(ctx context.Context, args []string, r *Reporter) error

var (
	rolesMu sync.Mutex
	roles   = map[string]RoleFunc{
		"tcp-echo": serveTCPEcho,
		"udp-echo": serveUDPEcho,
		"http":     serveHTTP,
	}
)

// RegisterRole adds a helper role that StartRole can run. Call it before
// Main (in TestMain or an init function).
func RegisterRole(name string, fn RoleFunc) {
	rolesMu.Lock()
	defer rolesMu.Unlock()
	if _, dup := roles[name]; dup {
		panic("netnstest: role " + name + " registered twice")
	}
	roles[name] = fn
}

// Main runs the package's tests; call it from TestMain. As root it runs them
// in a new network namespace (see the package doc). It never returns.
func Main(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runRole(role, os.Args[1:]))
	}
	os.Exit(runMain(m))
}

// deviceSysctls are set in the device namespace by Main.
var deviceSysctls = map[string]string{
	"net.ipv4.ip_unprivileged_port_start": "0",
	"net.ipv4.ping_group_range":           "0 2147483647",
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	if os.Getenv(envDevice) != "1" {
		return reexec()
	}
	initial, err := netns.IsInitial()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: %v\n", err)
		return 1
	}
	if initial {
		fmt.Fprintf(os.Stderr, "netnstest: %s=1 but still in the initial network namespace; refusing to run\n", envDevice)
		return 1
	}
	if err := setLinkUp("lo"); err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: bring lo up in the device namespace: %v\n", err)
		return 1
	}
	// Let app UIDs bind low server ports and send ICMP echo (ping) like
	// root, so tests can use the ports and tools the apps declare.
	for k, v := range deviceSysctls {
		if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(k, ".", "/"), []byte(v), 0); err != nil {
			fmt.Fprintf(os.Stderr, "netnstest: set %s in the device namespace: %v\n", k, err)
			return 1
		}
	}
	if err := Sweep(); err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: remove leftovers of killed test binaries: %v\n", err)
	}
	return m.Run()
}

// reexec runs the test binary again in a new network namespace, forwards
// signals to it, and returns its exit code.
func reexec() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envDevice+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: start tests in a new network namespace: %v\n", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	signal.Stop(sigs)
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(os.Stderr, "netnstest: test binary killed by %v\n", ws.Signal())
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "netnstest: %v\n", err)
	return 1
}

// setLinkUp sets IFF_UP on a link of the current network namespace.
func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veths and cgroups")
	}
}

// InInitialNetns reports whether the process is in the machine's own network
// namespace (see internal/netns.IsInitial).
func InInitialNetns() (bool, error) { return netns.IsInitial() }

// RequireDevice skips the test unless root and fails it if the process is in
// the initial network namespace (TestMain does not call Main). Use it before
// touching netfilter, routes or sysctls in the current namespace.
func RequireDevice(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	initial, err := netns.IsInitial()
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if initial {
		t.Fatal("netnstest: refusing to work in the initial network namespace; call netnstest.Main(m) from TestMain")
	}
}

// Reporter is a role's channel to the test: Ready once, then Events.
type Reporter struct {
	mu    sync.Mutex
	w     io.Writer
	ready bool
}

// Ready tells the test the role can be used; info is returned by Server.Info
// (the built-in servers put their listening address there).
func (r *Reporter) Ready(info string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ready {
		return
	}
	r.ready = true
	fmt.Fprintf(r.w, "ready %s\n", oneLine(info))
}

// Event reports something that happened, such as a peer connecting.
func (r *Reporter) Event(e Event) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, "event %s\n", b)
}

func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}

// runRole serves a helper role until stdin closes or SIGTERM/SIGINT arrives.
func runRole(name string, args []string) int {
	rolesMu.Lock()
	fn := roles[name]
	rolesMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "netnstest: unknown role %q (RegisterRole it before calling Main)\n", name)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		// The test closes our stdin to stop us, and so does its death.
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := fn(ctx, args, &Reporter{w: os.Stdout}); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "netnstest: role %s: %v\n", name, err)
		return 1
	}
	return 0
}
