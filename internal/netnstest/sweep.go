package netnstest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/wait"
)

// Name prefixes of what the bed creates; the creating test binary's pid
// follows, so leftovers of a binary that was killed can be told apart from
// those of binaries still running.
const (
	netnsPrefix  = "ph-inet-"
	cgroupPrefix = "pinhole-test-"
)

// ownerDead reports whether name is prefix + "<pid>-..." and that process
// no longer exists.
func ownerDead(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	_, err = os.Stat("/proc/" + pidText)
	return errors.Is(err, os.ErrNotExist)
}

// Sweep removes namespaces and cgroups left behind by test binaries that
// were killed before their cleanup ran (SIGKILL, a panic in another
// goroutine). Main calls it; things of running binaries are left alone.
func Sweep() error {
	var errs []error
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if !ownerDead(e.Name(), netnsPrefix) {
				continue
			}
			path := "/run/netns/" + e.Name()
			if err := killNetnsProcs(path, 5*time.Second); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := ipBatch("", []string{"netns del " + e.Name()}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	root, err := cgroup.Root()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("sweep cgroups: %w", err))...)
	}
	for _, e := range ents {
		if !e.IsDir() || !ownerDead(e.Name(), cgroupPrefix) {
			continue
		}
		if err := cgroup.Kill(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		if !wait.Until(5*time.Second, func() bool { p, err := cgroup.Populated(e.Name()); return err != nil || !p }) {
			errs = append(errs, fmt.Errorf("sweep cgroup %s: processes survive SIGKILL", e.Name()))
			continue
		}
		if err := cgroup.Remove(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
