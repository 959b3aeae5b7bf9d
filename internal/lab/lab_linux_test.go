package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/policy"
	"github.com/pinhole-net/pinhole/internal/wait"
)

// helperArg makes the test binary run a lab helper role instead of tests.
const helperArg = "lab-helper"

// testPrefix starts the names of the labs tests build; the test binary's
// pid follows, so leftovers of a killed binary can be found.
const testPrefix = "phlt-"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		if err := RunHelper(context.Background(), os.Args[2], os.Args[3:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "lab helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Geteuid() == 0 {
		sweep()
	}
	code := m.Run()
	if pinholedPath != "" {
		os.RemoveAll(filepath.Dir(pinholedPath))
	}
	os.Exit(code)
}

// sweep removes labs of test binaries that were killed before cleaning up.
func sweep() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), testPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSuffix(e.Name(), "-device"), "-internet")
		if _, err := Down(context.Background(), Layout{Name: name}, nil); err != nil {
			fmt.Fprintf(os.Stderr, "sweep lab %s: %v\n", name, err)
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates network namespaces, a veth pair and cgroups")
	}
	if req, _ := Missing(Tools(), FindTool); len(req) > 0 {
		t.Fatalf("the lab's programs are missing (CI must install them): %v", &MissingError{Tools: req})
	}
}

// newLayout names a lab of this test binary.
func newLayout(t *testing.T) Layout {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	l := Layout{Name: testPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := Down(context.Background(), l, nil); err != nil {
			t.Errorf("remove lab %s: %v", l.Name, err)
		}
	})
	return l
}

var (
	pinholedOnce sync.Once
	pinholedPath string
	pinholedErr  error
)

// buildPinholed builds cmd/pinholed once per test binary.
func buildPinholed(t *testing.T) string {
	t.Helper()
	pinholedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lab-pinholed-")
		if err != nil {
			pinholedErr = err
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		pinholedPath = filepath.Join(dir, "pinholed")
		out, err := exec.Command(goBin, "build", "-o", pinholedPath, "github.com/pinhole-net/pinhole/cmd/pinholed").CombinedOutput()
		if err != nil {
			pinholedErr = fmt.Errorf("go build pinholed: %v\n%s", err, out)
		}
	})
	if pinholedErr != nil {
		t.Fatal(pinholedErr)
	}
	return pinholedPath
}

func testOptions(t *testing.T, l Layout, pinholed string) (Options, *bytes.Buffer) {
	var progress bytes.Buffer
	return Options{
		Layout:   l,
		Pinholed: pinholed,
		Helper:   []string{os.Args[0], helperArg},
		Progress: &progress,
	}, &progress
}

// hostNetwork describes the machine's own namespace: links, routes and
// nftables tables, which the lab must leave alone.
func hostNetwork(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		fmt.Fprintf(&b, "link %s\n", i.Name)
	}
	for _, args := range [][]string{{"route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}, {"rule", "show"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		b.Write(out)
	}
	if nft, err := FindTool("nft"); err == nil {
		out, _ := exec.Command(nft, "list", "tables").CombinedOutput()
		b.Write(out)
	}
	return b.String()
}

// TestLab brings a lab up, runs the whole demo in it, checks its services,
// identities and supervision, kills its supervisor as a crash would, and
// removes it: nothing may be left, and the machine's own network must be as
// it was.
func TestLab(t *testing.T) {
	requireRoot(t)
	pinholed := buildPinholed(t)
	l := newLayout(t)
	hostBefore := hostNetwork(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	opts, progress := testOptions(t, l, pinholed)
	p, err := Up(ctx, opts)
	if err != nil {
		t.Fatalf("up: %v\n%s", err, progress)
	}
	var exists *ExistsError
	if _, err := Up(ctx, opts); !errors.As(err, &exists) {
		t.Errorf("second up: %v, want an ExistsError", err)
	}
	st, err := ReadStatus(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Problems) > 0 || !st.SupervisorAlive || len(st.Supervisor.Services) != len(p.Services) {
		t.Errorf("status: problems %q, supervisor alive %v, %d services", st.Problems, st.SupervisorAlive, len(st.Supervisor.Services))
	}

	t.Run("demo", func(t *testing.T) { testDemo(t, ctx, p) })
	t.Run("identities", func(t *testing.T) { testIdentities(t, p) })
	t.Run("restart", func(t *testing.T) { testRestart(t, l) })

	// A crash of the supervisor leaves the services running; down still
	// removes everything.
	st, err = ReadStatus(l)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.Supervisor.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !wait.Until(5*time.Second, func() bool { st, err := ReadStatus(l); return err == nil && !st.SupervisorAlive }) {
		t.Error("status does not notice the supervisor is gone")
	}
	rm, err := Down(ctx, l, nil)
	if err != nil {
		t.Fatalf("down: %v", err)
	}
	if rm.Processes < len(p.Services) || len(rm.Namespaces) != 2 || rm.Cgroup != l.Cgroup() || rm.Dir != l.Dir() {
		t.Errorf("down removed %+v", rm)
	}
	if left := Leftovers(l); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
	if rm, err := Down(ctx, l, nil); err != nil || !rm.Nothing() {
		t.Errorf("second down: %+v, %v", rm, err)
	}
	if after := hostNetwork(t); after != hostBefore {
		t.Errorf("the machine's own network changed:\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}

func testDemo(t *testing.T, ctx context.Context, p *Plan) {
	cfg, err := config.Load(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := policy.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	attempts, err := SampleAttempts(p, pol)
	if err != nil {
		t.Fatal(err)
	}
	client := api.NewUnixClient(p.APISocket)
	var out bytes.Buffer
	d := &DemoRunner{Plan: p, Policy: pol, Out: &out,
		Audit: func(ctx context.Context, identity string, since time.Time) ([]audit.Record, error) {
			return client.Audit(ctx, api.AuditQuery{App: identity, Since: since})
		}}
	outs, err := d.Run(ctx, attempts)
	t.Logf("demo:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != len(wantVerdicts) {
		t.Fatalf("%d outcomes, want %d", len(outs), len(wantVerdicts))
	}
	// Denials that the firewall (not DNS) makes leave an audit record.
	logged := []string{"webfetch/in-8081", "intruder/api-addr", "intruder/api-addr-v6", "intruder/ntp", "unmanaged/conncheck"}
	for _, o := range outs {
		if o.Got != wantVerdicts[o.ID] || !o.Match() {
			t.Errorf("%s: %s (%s), want %s", o.ID, o.Got, o.Summary, wantVerdicts[o.ID])
		}
		if slices.Contains(logged, o.ID) && len(o.Audit) == 0 {
			t.Errorf("%s: no audit record", o.ID)
		}
	}
	for _, want := range []string{
		"DENIED   intruder -> 198.18.1.2:443, HTTPS straight to api.contoso.example's address: connection refused by pinhole's firewall",
		"that address was looked up by webfetch",
		"img.contoso-cdn.example -> CNAME contoso.edgekey.example -> CNAME e7.a.akamaiedge.example -> 198.18.1.3",
		"answered by intruder's pinhole stub anyway",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// testIdentities checks that lab exec runs commands as the app: its UID
// and its cgroup, inside the device namespace.
func testIdentities(t *testing.T, p *Plan) {
	for _, tt := range []struct {
		app, uid, cgroup string
	}{
		{"webfetch", "64202", p.Layout().AppCgroup("webfetch")},
		{"telemetry", "64201", p.Layout().AppCgroup("telemetry")},
		{"", "0", p.Layout().ShellCgroup()},
	} {
		cmd, release, err := p.Command(tt.app, []string{"sh", "-c", "id -u; cat /proc/self/cgroup; readlink /proc/self/ns/net"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		release()
		if err != nil {
			t.Fatalf("%s: %v\n%s", tt.app, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var ns syscall.Stat_t
		if err := syscall.Stat(NetnsPath(p.DeviceNetns), &ns); err != nil {
			t.Fatal(err)
		}
		if lines[0] != tt.uid || !slices.Contains(lines, "0::/"+tt.cgroup) || lines[len(lines)-1] != fmt.Sprintf("net:[%d]", ns.Ino) {
			t.Errorf("app %q: got %q, want uid %s, cgroup %s, namespace %d", tt.app, lines, tt.uid, tt.cgroup, ns.Ino)
		}
	}
	if _, _, err := p.Command("nosuchapp", []string{"true"}); err == nil {
		t.Error("command for an unknown app: no error")
	}
}

// testRestart kills a service; the supervisor starts it again.
func testRestart(t *testing.T, l Layout) {
	st, err := ReadStatus(l)
	if err != nil {
		t.Fatal(err)
	}
	var web ServiceState
	for _, s := range st.Supervisor.Services {
		if s.Name == "web" {
			web = s
		}
	}
	if web.PID == 0 {
		t.Fatalf("no web service in %+v", st.Supervisor.Services)
	}
	if err := syscall.Kill(web.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ok := wait.Until(15*time.Second, func() bool {
		st, err := ReadStatus(l)
		if err != nil {
			return false
		}
		for _, s := range st.Supervisor.Services {
			if s.Name == "web" {
				return s.State == "running" && s.Restarts == 1 && s.PID != web.PID && len(st.Problems) == 0
			}
		}
		return false
	})
	if !ok {
		st, _ := ReadStatus(l)
		t.Errorf("web was not restarted: %+v", st.Supervisor.Services)
	}
}

// TestUpFailsCleanly: a pinholed that does not start makes up fail and
// leaves nothing behind.
func TestUpFailsCleanly(t *testing.T) {
	requireRoot(t)
	l := newLayout(t)
	broken := filepath.Join(t.TempDir(), "pinholed")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'pinholed: broken on purpose' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts, _ := testOptions(t, l, broken)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Up(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "pinholed") || !strings.Contains(err.Error(), "broken on purpose") {
		t.Errorf("up with a broken pinholed: %v", err)
	}
	if left := Leftovers(l); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}

// TestDownHalfBuilt: down removes what a crashed or half-built lab left:
// a namespace with a process in it, a cgroup with a process, a state
// directory without a plan.
func TestDownHalfBuilt(t *testing.T) {
	requireRoot(t)
	l := newLayout(t)
	if err := os.MkdirAll(filepath.Join(l.Dir(), "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ipBatch("", []string{"netns add " + l.DeviceNetns()}); err != nil {
		t.Fatal(err)
	}
	if err := cgroup.Create(l.AppCgroup("x")); err != nil {
		t.Fatal(err)
	}
	dir, err := cgroup.OpenDir(l.AppCgroup("x"))
	if err != nil {
		t.Fatal(err)
	}
	inCgroup := exec.Command("sleep", "600")
	inCgroup.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if err := inCgroup.Start(); err != nil {
		t.Fatal(err)
	}
	dir.Close()
	// Started like `ip netns exec` would: outside the lab's cgroup.
	inNetns := exec.Command("nsenter", "--net="+NetnsPath(l.DeviceNetns()), "--", "sleep", "600")
	if err := inNetns.Start(); err != nil {
		t.Fatal(err)
	}
	if !wait.Until(5*time.Second, func() bool { pids, _ := netnsPids(l.DeviceNetns()); return len(pids) == 1 }) {
		t.Fatal("the process did not enter the namespace")
	}
	rm, err := Down(context.Background(), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*exec.Cmd{inCgroup, inNetns} {
		if err := c.Wait(); err == nil {
			t.Errorf("%v exited normally; it should have been killed", c.Args)
		}
	}
	if rm.Processes != 2 || len(rm.Namespaces) != 1 || rm.Cgroup == "" || rm.Dir == "" {
		t.Errorf("removed %+v", rm)
	}
	if left := Leftovers(l); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}
