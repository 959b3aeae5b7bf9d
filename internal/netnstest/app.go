package netnstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/wait"
)

// App is a test app identity: a cgroup v2 directory and a UID/GID (without a
// passwd entry).
type App struct {
	Name     string
	UID, GID uint32
	Cgroup   string // relative to the cgroup2 root: "pinhole-test-<pid>-<rand>/<name>"
	CgroupID uint64 // what `socket cgroupv2` compares
	Level    int    // components of Cgroup (the `level` in nftables)

	top  string // "pinhole-test-<pid>-<rand>", removed at cleanup
	dir  *os.File
	mu   sync.Mutex
	cmds []*exec.Cmd
}

// Ident says which parts of an app's identity a process gets.
type Ident struct {
	UID    bool // run with the app's UID and GID, else as the test (root)
	Cgroup bool // start inside the app's cgroup, else in the test's cgroup
}

// Full is both parts of an app's identity.
var Full = Ident{UID: true, Cgroup: true}

// FirstUID is the first UID NewApp hands out; each app in a test binary gets
// the next one.
const FirstUID = 40000

var nextUID atomic.Uint32

// NewApp creates the app's cgroup and allocates its UID. At cleanup it kills
// the processes in the cgroup (and those started by its commands) and
// removes the cgroup. name may contain slashes to nest cgroups ("a/b").
func NewApp(t testing.TB, name string) *App {
	t.Helper()
	RequireRoot(t)
	top := cgroupPrefix + strconv.Itoa(os.Getpid()) + "-" + randHex(4)
	rel := top + "/" + name
	level, err := cgroup.Level(rel)
	if err != nil {
		t.Fatalf("netnstest: app %q: %v", name, err)
	}
	uid := FirstUID + nextUID.Add(1) - 1
	a := &App{Name: name, UID: uid, GID: uid, Cgroup: rel, Level: level, top: top}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("netnstest: remove app %s: %v", name, err)
		}
	})
	if err := cgroup.Create(rel); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if a.CgroupID, err = cgroup.ID(rel); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if a.dir, err = cgroup.OpenDir(rel); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	return a
}

// Command returns a command that runs with the app's full identity: it
// starts inside the app's cgroup (so every socket it creates belongs to it)
// as the app's UID and GID, in the current (device) network namespace.
func (a *App) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return a.CommandAs(ctx, Full, name, args...)
}

// CommandAs is Command with only the parts of the identity that id selects:
// Ident{UID: true} for a UID-identified app, Ident{Cgroup: true} for a
// cgroup-identified one (as root), Ident{} for an unmanaged process.
func (a *App) CommandAs(ctx context.Context, id Ident, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = a.attr(id)
	a.track(cmd)
	return cmd
}

func (a *App) attr(id Ident) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if id.Cgroup {
		attr.UseCgroupFD = true
		attr.CgroupFD = int(a.dir.Fd())
	}
	if id.UID {
		attr.Credential = &syscall.Credential{Uid: a.UID, Gid: a.GID, Groups: []uint32{}}
	}
	return attr
}

func (a *App) track(cmd *exec.Cmd) {
	a.mu.Lock()
	a.cmds = append(a.cmds, cmd)
	a.mu.Unlock()
}

// StartRole runs the test binary as helper role (RegisterRole) with the
// parts of the app's identity that id selects, in the current (device)
// namespace, for instance a server that is the app (TCPEcho's role is
// "tcp-echo" with the address:port as argument).
func (a *App) StartRole(t testing.TB, id Ident, role string, args ...string) *Server {
	t.Helper()
	return startRole(t, roleSpec{attr: a.attr(id), track: a.track}, role, args)
}

// Close kills the app's processes and removes its cgroup. NewApp registers
// it with t.Cleanup; calling it again does nothing.
func (a *App) Close() error {
	a.mu.Lock()
	cmds := a.cmds
	a.cmds = nil
	a.mu.Unlock()
	for _, c := range cmds {
		// Kill is safe after Wait and concurrent with it; ProcessState is not.
		if c.Process != nil {
			c.Process.Kill()
		}
	}
	if a.dir != nil {
		a.dir.Close()
	}
	p, err := cgroup.Path(a.top)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	if err := cgroup.Kill(a.top); err != nil {
		return err
	}
	var populated bool
	ok := wait.Until(10*time.Second, func() bool {
		populated, err = cgroup.Populated(a.top)
		return err != nil || !populated
	})
	if err != nil {
		return err
	}
	if !ok {
		procs, _ := cgroup.Procs(a.Cgroup)
		return fmt.Errorf("processes %v in cgroup %s survive SIGKILL", procs, a.Cgroup)
	}
	return cgroup.Remove(a.top)
}

// NftPath is the app's cgroup as the nft CLI spells it in `socket cgroupv2
// level L "PATH"`: relative to /sys/fs/cgroup, whatever the cgroup2 root is
// ("unified/..." in the hybrid layout). It is "" if the root is elsewhere.
// Product code uses CgroupID instead.
func (a *App) NftPath() string {
	root, err := cgroup.Root()
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel("/sys/fs/cgroup", root)
	if err != nil || strings.HasPrefix(rel, "..") {
		return ""
	}
	return filepath.Join(rel, a.Cgroup)
}
