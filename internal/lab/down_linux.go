package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/wait"
)

// Removed says what Down took away.
type Removed struct {
	Processes  int
	Namespaces []string
	Cgroup     string
	Dir        string
}

// Nothing reports whether there was nothing to remove.
func (r Removed) Nothing() bool {
	return r.Processes == 0 && len(r.Namespaces) == 0 && r.Cgroup == "" && r.Dir == ""
}

// Down removes the lab l: it asks the supervisor to stop the services, kills
// whatever is left in the lab's cgroup and namespaces, deletes the
// namespaces (and with them the veth pair), the cgroups and the state
// directory. It works on a half-built lab and after a crash, and does
// nothing when there is no lab.
func Down(ctx context.Context, l Layout, log *slog.Logger) (Removed, error) {
	if os.Geteuid() != 0 {
		return Removed{}, ErrNotRoot
	}
	if err := l.Validate(); err != nil {
		return Removed{}, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(l.Dir()); err == nil {
		unlock, err := lockDir(ctx, l.Dir())
		if err == nil {
			defer unlock()
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Removed{}, err
		}
	}
	return teardown(l, log)
}

// teardown is Down without the checks; the caller holds the lock if there
// is a state directory.
func teardown(l Layout, log *slog.Logger) (Removed, error) {
	var (
		rm   Removed
		errs []error
	)
	cgPath, _ := cgroup.Path(l.Cgroup())
	_, cgErr := os.Stat(cgPath)
	haveCgroup := cgPath != "" && cgErr == nil
	rm.Processes = len(labPids(l, haveCgroup))

	// The supervisor stops pinholed and the services in order.
	if st, err := readSupervisorState(l.Dir()); err == nil && st.PID > 0 && haveCgroup {
		if rel, err := cgroup.Of(st.PID); err == nil && rel == l.ServicesCgroup() {
			if unix.Kill(st.PID, unix.SIGTERM) == nil {
				wait.Until(stopTimeout+2*time.Second, func() bool {
					p, err := cgroup.Populated(l.ServicesCgroup())
					return err != nil || !p
				})
			}
		}
	}
	if haveCgroup {
		if err := cgroup.Kill(l.Cgroup()); err != nil {
			errs = append(errs, err)
		} else if !wait.Until(10*time.Second, func() bool {
			p, err := cgroup.Populated(l.Cgroup())
			return err != nil || !p
		}) {
			errs = append(errs, fmt.Errorf("processes in cgroup %s survive SIGKILL", l.Cgroup()))
		}
	}
	// Processes started in the namespaces by other means (ip netns exec).
	for _, ns := range []string{l.DeviceNetns(), l.InternetNetns()} {
		if err := killNetns(ns, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range []string{l.DeviceNetns(), l.InternetNetns()} {
		if !netnsExists(ns) {
			continue
		}
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		rm.Namespaces = append(rm.Namespaces, ns)
	}
	if haveCgroup {
		if err := cgroup.Remove(l.Cgroup()); err != nil {
			errs = append(errs, err)
		} else {
			rm.Cgroup = l.Cgroup()
		}
	}
	if _, err := os.Stat(l.Dir()); err == nil {
		if err := os.RemoveAll(l.Dir()); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", l.Dir(), err))
		} else {
			rm.Dir = l.Dir()
		}
	}
	log.Debug("lab removed", "lab", l.Name, "processes", rm.Processes, "namespaces", rm.Namespaces)
	return rm, errors.Join(errs...)
}

// labPids lists the processes of lab l: in its cgroup or its namespaces.
func labPids(l Layout, haveCgroup bool) map[int]bool {
	pids := map[int]bool{}
	if haveCgroup {
		for _, p := range cgroupPids(l.Cgroup()) {
			pids[p] = true
		}
	}
	for _, ns := range []string{l.DeviceNetns(), l.InternetNetns()} {
		found, _ := netnsPids(ns)
		for _, p := range found {
			pids[p] = true
		}
	}
	return pids
}

// countProcs counts the processes in rel and below it.
func countProcs(rel string) int { return len(cgroupPids(rel)) }

// cgroupPids lists the processes in rel and below it.
func cgroupPids(rel string) []int {
	root, err := cgroup.Path(rel)
	if err != nil {
		return nil
	}
	var out []int
	var walk func(rel, dir string)
	walk = func(rel, dir string) {
		if pids, err := cgroup.Procs(rel); err == nil {
			out = append(out, pids...)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				walk(rel+"/"+e.Name(), dir+"/"+e.Name())
			}
		}
	}
	walk(rel, root)
	return out
}

// Leftovers lists what of lab l exists: its state directory, namespaces,
// cgroup and the processes in them. It is empty when no lab is up and
// nothing was left behind.
func Leftovers(l Layout) []string {
	var out []string
	if _, err := os.Stat(l.Dir()); err == nil {
		out = append(out, "state directory "+l.Dir())
	}
	for _, ns := range []string{l.DeviceNetns(), l.InternetNetns()} {
		if netnsExists(ns) {
			out = append(out, "namespace "+ns)
		}
		if pids, _ := netnsPids(ns); len(pids) > 0 {
			out = append(out, fmt.Sprintf("processes %v in namespace %s", pids, ns))
		}
	}
	if p, err := cgroup.Path(l.Cgroup()); err == nil {
		if _, err := os.Stat(p); err == nil {
			out = append(out, "cgroup "+l.Cgroup())
			if n := countProcs(l.Cgroup()); n > 0 {
				out = append(out, fmt.Sprintf("%d processes in cgroup %s", n, l.Cgroup()))
			}
		}
	}
	return out
}
