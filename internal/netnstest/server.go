package netnstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long StartRole waits for a role to report ready.
var ReadyTimeout = 20 * time.Second

// Event is something a helper role reports, such as a peer connecting.
type Event struct {
	// Kind is "tcp" (accepted connection), "udp" (datagram), "http" (request)
	// for the built-in servers, or whatever a custom role chooses.
	Kind   string         `json:"kind"`
	Local  netip.AddrPort `json:"local,omitzero"`
	Remote netip.AddrPort `json:"remote,omitzero"`
	// Detail is free text: the HTTP request line, a UDP payload's length...
	Detail string `json:"detail,omitempty"`
}

// HTTPReply is the JSON body the HTTP server answers every request with.
type HTTPReply struct {
	Local  string `json:"local"`  // server address:port the request arrived at
	Remote string `json:"remote"` // client address:port as the server saw it
	Host   string `json:"host"`
	Method string `json:"method"`
	Path   string `json:"path"`
}

// Server is a running helper role process.
type Server struct {
	// Info is what the role passed to Ready; the built-in servers put their
	// listening address:port there.
	Info string
	// Addr is Info parsed as an address:port (zero if it is not one).
	Addr netip.AddrPort

	cmd    *exec.Cmd
	stdin  io.Closer
	stderr *lockedBuffer
	done   chan struct{} // closed when stdout is drained
	mu     sync.Mutex
	events []Event
	notify chan struct{} // closed and replaced on every event
	stop   sync.Once
	err    error
}

// Pid is the role process's id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Events returns the events reported so far.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// WaitEvents waits until at least n events were reported and returns them;
// it fails the test after timeout.
func (s *Server) WaitEvents(t testing.TB, n int, timeout time.Duration) []Event {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ev, ch := append([]Event(nil), s.events...), s.notify
		s.mu.Unlock()
		if len(ev) >= n {
			return ev
		}
		select {
		case <-ch:
		case <-s.done:
			if len(s.Events()) >= n {
				continue
			}
			t.Fatalf("server %s exited with %d of %d events: %v\nstderr: %s", s.Info, len(ev), n, s.waitErr(), s.stderr)
		case <-deadline.C:
			t.Fatalf("server %s: %d of %d events after %v: %v", s.Info, len(ev), n, timeout, ev)
		}
	}
}

// Stop ends the role (closes its stdin, then kills it) and waits for it.
func (s *Server) Stop() error {
	s.stop.Do(func() {
		s.stdin.Close()
		exited := make(chan error, 1)
		go func() { exited <- s.cmd.Wait() }()
		select {
		case s.err = <-exited:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			s.err = <-exited
		}
		<-s.done
	})
	return s.err
}

func (s *Server) waitErr() error {
	<-s.done
	return s.Stop()
}

// StartRole runs the test binary as helper role (RegisterRole) in the
// current network namespace, waits until it is ready and stops it at cleanup.
func StartRole(t testing.TB, role string, args ...string) *Server {
	t.Helper()
	return startRole(t, roleSpec{}, role, args)
}

// roleSpec says how to start a role process.
type roleSpec struct {
	wrapper []string             // command put in front (nsenter for the internet namespace)
	attr    *syscall.SysProcAttr // credentials and cgroup, for apps
	track   func(*exec.Cmd)      // registers the command with its owner's cleanup
}

// startRole runs the test binary in a role.
func startRole(t testing.TB, spec roleSpec, role string, args []string) *Server {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("start role %s: %v", role, err)
	}
	// Run the binary through an inherited descriptor: an app's UID may not
	// search the private directory go test builds it in.
	bin, err := os.Open(exe)
	if err != nil {
		t.Fatalf("start role %s: %v", role, err)
	}
	defer bin.Close()
	argv := append(append(append([]string(nil), spec.wrapper...), "/proc/self/fd/3"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.ExtraFiles = []*os.File{bin}
	for _, kv := range os.Environ() {
		// Coverage output of a role is not wanted and may not be writable.
		if !strings.HasPrefix(kv, "GOCOVERDIR=") && !strings.HasPrefix(kv, envRole+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, envRole+"="+role)
	cmd.SysProcAttr = spec.attr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("start role %s: %v", role, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("start role %s: %v", role, err)
	}
	s := &Server{cmd: cmd, stdin: stdin, stderr: &lockedBuffer{}, done: make(chan struct{}), notify: make(chan struct{})}
	cmd.Stderr = s.stderr
	if spec.track != nil {
		spec.track(cmd)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start role %s: %v", role, err)
	}
	t.Cleanup(func() {
		s.Stop()
		if s.stderr.Len() > 0 {
			t.Logf("role %s %v stderr:\n%s", role, args, s.stderr)
		}
	})
	ready := make(chan string, 1)
	go s.read(stdout, ready)
	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case info := <-ready:
		s.Info = info
		s.Addr, _ = netip.ParseAddrPort(info)
		return s
	case <-s.done:
		t.Fatalf("role %s %v exited before it was ready: %v\nstderr: %s", role, args, s.waitErr(), s.stderr)
	case <-timer.C:
		t.Fatalf("role %s %v not ready after %v (does TestMain call netnstest.Main?)\nstderr: %s", role, args, ReadyTimeout, s.stderr)
	}
	return nil
}

func (s *Server) read(stdout io.Reader, ready chan<- string) {
	defer close(s.done)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if info, ok := strings.CutPrefix(line, "ready "); ok {
			select {
			case ready <- info:
			default:
			}
			continue
		}
		if js, ok := strings.CutPrefix(line, "event "); ok {
			var e Event
			if err := json.Unmarshal([]byte(js), &e); err != nil {
				fmt.Fprintf(s.stderr, "bad event line %q: %v\n", line, err)
				continue
			}
			s.mu.Lock()
			s.events = append(s.events, e)
			close(s.notify)
			s.notify = make(chan struct{})
			s.mu.Unlock()
			continue
		}
		fmt.Fprintf(s.stderr, "stdout: %s\n", line)
	}
	io.Copy(io.Discard, stdout)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Built-in roles. Each takes one argument, the address:port to listen on
// (port 0 picks a free one), and reports the bound address as ready info.

func roleAddr(args []string) (netip.AddrPort, error) {
	if len(args) != 1 {
		return netip.AddrPort{}, fmt.Errorf("want one argument address:port, got %q", args)
	}
	return netip.ParseAddrPort(args[0])
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return unmap(a.AddrPort())
	case *net.UDPAddr:
		return unmap(a.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmap(ap)
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func serveTCPEcho(ctx context.Context, args []string, r *Reporter) error {
	addr, err := roleAddr(args)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	r.Ready(addrPortOf(ln.Addr()).String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		r.Event(Event{Kind: "tcp", Local: addrPortOf(c.LocalAddr()), Remote: addrPortOf(c.RemoteAddr())})
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func serveUDPEcho(ctx context.Context, args []string, r *Reporter) error {
	addr, err := roleAddr(args)
	if err != nil {
		return err
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { pc.Close() })
	local := addrPortOf(pc.LocalAddr())
	r.Ready(local.String())
	buf := make([]byte, 64*1024)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		r.Event(Event{Kind: "udp", Local: local, Remote: unmap(from), Detail: fmt.Sprintf("%d bytes", n)})
		pc.WriteToUDPAddrPort(buf[:n], from)
	}
}

func serveHTTP(ctx context.Context, args []string, r *Reporter) error {
	addr, err := roleAddr(args)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			local, _ := req.Context().Value(http.LocalAddrContextKey).(net.Addr)
			rep := HTTPReply{Remote: req.RemoteAddr, Host: req.Host, Method: req.Method, Path: req.URL.Path}
			ev := Event{Kind: "http", Detail: req.Method + " " + req.URL.RequestURI()}
			if local != nil {
				ev.Local = addrPortOf(local)
				rep.Local = ev.Local.String()
			}
			if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
				ev.Remote = unmap(ap)
				rep.Remote = ev.Remote.String()
			}
			r.Event(ev)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rep)
		}),
	}
	context.AfterFunc(ctx, func() { srv.Close() })
	r.Ready(addrPortOf(ln.Addr()).String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
