package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// rootOnce caches the mount point: mounts of the cgroup2 hierarchy do not move
// while a process runs.
var rootOnce = sync.OnceValues(func() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	root, err := ParseMountinfo(f)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	return root, nil
})

// Root returns where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on
// unified systems, /sys/fs/cgroup/unified in the hybrid layout.
func Root() (string, error) { return rootOnce() }

// Path returns the absolute directory of rel under Root.
func Path(rel string) (string, error) {
	if err := Validate(rel); err != nil {
		return "", err
	}
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, rel), nil
}

// ID returns the cgroup id of rel: the 64-bit kernfs node id that nftables'
// `socket cgroupv2` compares, equal to the directory's inode number on 64-bit
// machines. It asks the kernel for the file handle, which carries the full id
// on 32-bit machines too, and falls back to the inode number.
func ID(rel string) (uint64, error) {
	p, err := Path(rel)
	if err != nil {
		return 0, err
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
	if err == nil && len(h.Bytes()) == 8 {
		return binary.NativeEndian.Uint64(h.Bytes()), nil
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("cgroup %q: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("cgroup %q: %s is not a directory", rel, p)
	}
	return st.Ino, nil
}

// Create makes rel and any missing parents (like mkdir -p).
func Create(rel string) error {
	if rel == "" {
		return fmt.Errorf("create cgroup: the root always exists")
	}
	p, err := Path(rel)
	if err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("create cgroup %q: %w", rel, err)
	}
	return nil
}

// Remove deletes rel and every cgroup below it, leaves first. It fails,
// naming the cgroup and its processes, if any process is still inside.
// Removing a cgroup that does not exist is not an error.
func Remove(rel string) error {
	if rel == "" {
		return fmt.Errorf("remove cgroup: refusing to remove the root")
	}
	p, err := Path(rel)
	if err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	return removeTree(rel, p)
}

func removeTree(rel, p string) error {
	ents, err := os.ReadDir(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove cgroup %q: %w", rel, err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(rel+"/"+e.Name(), filepath.Join(p, e.Name())); err != nil {
				return err
			}
		}
	}
	err = unix.Rmdir(p)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY):
		pids, _ := readProcs(p)
		return fmt.Errorf("remove cgroup %q: still has processes %v", rel, pids)
	}
	return fmt.Errorf("remove cgroup %q: %w", rel, err)
}

// Enter moves process pid into rel (pid 0 is the calling process). Sockets
// the process already has keep their old cgroup.
func Enter(rel string, pid int) error {
	p, err := Path(rel)
	if err != nil {
		return fmt.Errorf("enter cgroup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(p, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move pid %d into cgroup %q: %w", pid, rel, err)
	}
	return nil
}

// OpenDir opens rel's directory, for syscall.SysProcAttr.CgroupFD so a child
// starts inside the cgroup (clone3 CLONE_INTO_CGROUP).
func OpenDir(rel string) (*os.File, error) {
	p, err := Path(rel)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %q: %w", rel, &os.PathError{Op: "open", Path: p, Err: err})
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Of returns the cgroup v2 path of process pid (0 for the calling process).
func Of(pid int) (string, error) {
	name := "/proc/self/cgroup"
	if pid != 0 {
		name = "/proc/" + strconv.Itoa(pid) + "/cgroup"
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	rel, err := ParseProcCgroup(data)
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return rel, nil
}

// Procs lists the processes directly in rel (not in its children).
func Procs(rel string) ([]int, error) {
	p, err := Path(rel)
	if err != nil {
		return nil, fmt.Errorf("list cgroup processes: %w", err)
	}
	pids, err := readProcs(p)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %q: %w", rel, err)
	}
	return pids, nil
}

func readProcs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for f := range strings.FieldsSeq(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("bad pid %q in cgroup.procs", f)
		}
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids, nil
}

// Populated reports whether any process is in rel or below it.
func Populated(rel string) (bool, error) {
	p, err := Path(rel)
	if err != nil {
		return false, err
	}
	if rel == "" {
		return true, nil
	}
	data, err := os.ReadFile(filepath.Join(p, "cgroup.events"))
	if err != nil {
		return false, fmt.Errorf("cgroup %q: %w", rel, err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "populated "); ok {
			return v == "1", nil
		}
	}
	return false, fmt.Errorf("cgroup %q: cgroup.events has no populated line", rel)
}

// Kill sends SIGKILL to every process in rel and below it, through
// cgroup.kill (Linux 5.14+) or, without it, to each listed process. It does
// not wait; poll Populated to see them gone.
func Kill(rel string) error {
	if rel == "" {
		return fmt.Errorf("kill cgroup: refusing to kill the root")
	}
	p, err := Path(rel)
	if err != nil {
		return fmt.Errorf("kill cgroup: %w", err)
	}
	err = os.WriteFile(filepath.Join(p, "cgroup.kill"), []byte("1"), 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill cgroup %q: %w", rel, err)
	}
	if _, serr := os.Stat(p); serr != nil {
		return fmt.Errorf("kill cgroup %q: %w", rel, serr)
	}
	return filepath.WalkDir(p, func(dir string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		pids, err := readProcs(dir)
		if err != nil {
			return fmt.Errorf("kill cgroup %q: %w", rel, err)
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("kill pid %d in cgroup %q: %w", pid, rel, err)
			}
		}
		return nil
	})
}
