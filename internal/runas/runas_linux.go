package runas

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/pinhole-net/pinhole/internal/cgroup"
)

// Become moves the calling process into t: first its cgroup (so every socket
// it creates from now on belongs to the app), then its groups, gid and uid.
// It needs root, and it cannot be undone.
func Become(t Target) error {
	if os.Geteuid() != 0 && (t.Cgroup != "" || t.ChangeUser) {
		return fmt.Errorf("becoming %s needs root (run pinhole run as root, or start the app from a service manager)", t)
	}
	if t.Cgroup != "" {
		if err := cgroup.Create(t.Cgroup); err != nil {
			return fmt.Errorf("create cgroup: %w", err)
		}
		if err := cgroup.Enter(t.Cgroup, 0); err != nil {
			return fmt.Errorf("enter cgroup: %w", err)
		}
	}
	if !t.ChangeUser {
		return nil
	}
	groups := make([]int, len(t.Groups))
	for i, g := range t.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("set groups %v: %w", t.Groups, err)
	}
	if err := syscall.Setgid(int(t.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", t.GID, err)
	}
	if err := syscall.Setuid(int(t.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", t.UID, err)
	}
	return nil
}

// Exec becomes t and replaces the process with argv[0], found in PATH.
// It returns only on failure.
func Exec(t Target, argv []string, env []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("no command to run")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if err := Become(t); err != nil {
		return err
	}
	if err := syscall.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
