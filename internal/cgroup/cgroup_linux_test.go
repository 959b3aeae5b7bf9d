package cgroup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoot(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("Root() = %s, filesystem type %#x, want cgroup2", root, fs.Type)
	}
}

func TestOfSelf(t *testing.T) {
	rel, err := Of(0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Path(rel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err != nil {
		t.Fatalf("own cgroup %q does not exist: %v", rel, err)
	}
}

func testCgroup(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates cgroups")
	}
	b := make([]byte, 4)
	rand.Read(b)
	top := "pinhole-cgtest-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		Kill(top)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if err := Remove(top); err == nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("cleanup: %v", Remove(top))
	})
	return top
}

func TestCreateIDEnterRemove(t *testing.T) {
	top := testCgroup(t)
	rel := top + "/app/sub"
	if err := Create(rel); err != nil {
		t.Fatal(err)
	}
	if err := Create(rel); err != nil {
		t.Fatalf("second Create: %v", err)
	}
	id, err := ID(rel)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Path(rel)
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if id != st.Ino {
		t.Errorf("ID = %d, inode = %d", id, st.Ino)
	}
	if lvl, _ := Level(rel); lvl != 3 {
		t.Errorf("Level = %d, want 3", lvl)
	}

	// A process moved in with Enter shows up in Procs, Of and Populated.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if err := Enter(rel, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if got, err := Of(cmd.Process.Pid); err != nil || got != rel {
		t.Errorf("Of = %q, %v; want %q", got, err, rel)
	}
	if pids, err := Procs(rel); err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("Procs = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
	if pop, err := Populated(top); err != nil || !pop {
		t.Errorf("Populated(top) = %v, %v; want true", pop, err)
	}
	err = Remove(top)
	if err == nil || !strings.Contains(err.Error(), "still has processes") {
		t.Fatalf("Remove with a process inside: %v, want a 'still has processes' error", err)
	}
	if err := Kill(top); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if pop, err := Populated(top); err != nil || pop {
		t.Errorf("after Kill, Populated = %v, %v", pop, err)
	}
	if err := Remove(top); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cgroup dir still there: %v", err)
	}
	if err := Remove(top); err != nil {
		t.Fatalf("Remove of a missing cgroup: %v", err)
	}
}

// TestCgroupFD checks that a child started with SysProcAttr.CgroupFD
// (clone3 CLONE_INTO_CGROUP) begins life inside the cgroup.
func TestCgroupFD(t *testing.T) {
	top := testCgroup(t)
	rel := top + "/app"
	if err := Create(rel); err != nil {
		t.Fatal(err)
	}
	dir, err := OpenDir(rel)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command("cat", "/proc/self/cgroup")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseProcCgroup(out)
	if err != nil || got != rel {
		t.Fatalf("child's cgroup = %q, %v; want %q", got, err, rel)
	}
}

func TestRemoveRefusesRoot(t *testing.T) {
	if err := Remove(""); err == nil {
		t.Fatal("Remove(\"\") succeeded")
	}
	if err := Kill(""); err == nil {
		t.Fatal("Kill(\"\") succeeded")
	}
	if err := Create("/abs"); err == nil {
		t.Fatal("Create(\"/abs\") succeeded")
	}
}
