package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Of returns the network namespace of process pid (0 for the calling thread's
// process).
func Of(pid int) (ID, error) {
	p := "/proc/self/ns/net"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ID{}, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	return ID{Dev: st.Dev, Ino: st.Ino}, nil
}

// IsInitial reports whether the calling process shares the network namespace
// of PID 1, the machine's own one. If PID 1 cannot be inspected (it may be
// undumpable even for root), it compares with kthreadd (PID 2), a kernel
// thread that always lives in the initial namespace.
func IsInitial() (bool, error) {
	self, err := Of(0)
	if err != nil {
		return false, err
	}
	init, err := Of(1)
	if err != nil && errors.Is(err, os.ErrPermission) && isKthreadd(2) {
		init, err = Of(2)
	}
	if err != nil {
		return false, fmt.Errorf("compare with the initial network namespace: %w", err)
	}
	return self == init, nil
}

// isKthreadd reports whether pid is the kernel's thread creator: named
// kthreadd, with parent 0.
func isKthreadd(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "2 (kthreadd) S 0 0 0 ..."
	rest, ok := strings.CutPrefix(string(data), fmt.Sprintf("%d (kthreadd) ", pid))
	if !ok {
		return false
	}
	f := strings.Fields(rest)
	return len(f) >= 2 && f[1] == "0"
}

// Do runs fn on a thread that has joined the network namespace at path,
// then moves the thread back. If it cannot move back, the thread stays locked
// and the runtime discards it, so no other goroutine runs in that namespace.
func Do(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("join %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("in %s: %w", path, err)
	}
	return nil
}

// OfPath returns the network namespace of a namespace file, such as
// /run/netns/NAME.
func OfPath(path string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ID{}, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return ID{Dev: st.Dev, Ino: st.Ino}, nil
}

// Pids lists the processes in network namespace id, by the namespace of
// their main thread. Exited processes (zombies) have none and are not listed.
func Pids(id ID) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) == nil && st.Dev == id.Dev && st.Ino == id.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
