package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// resolvWatcher follows resolv.conf when the DNS upstreams come from it: an
// empty file at boot gets its servers from DHCP later, and a network change
// replaces them. When the servers in the file differ from those of the
// running policy, it runs the normal reload (compile, firewall, DNS
// proxy). inotify on the file's directory, and on its symlink target's,
// tells at once, since the file is usually replaced by a rename; a slow
// poll backs it up.
type resolvWatcher struct {
	log    *slog.Logger
	poll   time.Duration
	settle time.Duration // quiet time after an event before reading
	// current returns the running policy's resolv.conf path ("" when the
	// config lists the upstreams) and upstreams.
	current func() (path string, ups []netip.AddrPort)
	read    func(path string) ([]netip.AddrPort, error)
	reload  func() error

	// failed is the server list whose reload failed, so the same content
	// is retried only by the poll, not on every event (a new list, or a
	// new policy, is tried at once).
	failed    []netip.AddrPort
	hasFailed bool
}

const (
	resolvPoll   = 30 * time.Second
	resolvSettle = 100 * time.Millisecond
)

// run checks the file at start, on every event of the watched directories
// (after they have been quiet for settle) and every poll interval, until
// ctx ends. n may be nil: then it only polls.
func (w *resolvWatcher) run(ctx context.Context, n notifier) {
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	var events <-chan struct{}
	if n != nil {
		events = n.events()
	}
	polled := false
	for {
		path, ups := w.current()
		if n != nil {
			if err := n.watch(watchDirs(path)); err != nil {
				w.log.Debug("watch resolv.conf's directory; polling every "+w.poll.String(), "err", err)
			}
		}
		if path != "" {
			w.check(path, ups, polled)
		}
		polled = false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			polled = true
		case <-events:
			// A writer may truncate, then write: wait until it is done.
			quiet := time.NewTimer(w.settle)
		settle:
			for {
				select {
				case <-ctx.Done():
					quiet.Stop()
					return
				case <-events:
					quiet.Reset(w.settle)
				case <-quiet.C:
					break settle
				}
			}
		}
	}
}

// check reloads when the file's servers differ from the running ones; a
// list whose reload failed is tried again only when retry (the poll) says.
func (w *resolvWatcher) check(path string, running []netip.AddrPort, retry bool) {
	got, err := w.read(path)
	if err != nil {
		got = nil // no usable nameserver: the policy then has none either
	}
	if slices.Equal(got, running) {
		w.hasFailed = false
		return
	}
	if w.hasFailed && slices.Equal(got, w.failed) && !retry {
		return
	}
	w.log.Info("resolv.conf changed; reloading to take its DNS servers", "file", path, "servers", got, "was", running)
	if err := w.reload(); err != nil {
		w.failed, w.hasFailed = got, true
		return
	}
	w.hasFailed = false
}

// watchDirs are the directories whose changes may change path: its own,
// and its symlink target's (systemd-resolved and resolvconf swap the
// target, not the link).
func watchDirs(path string) []string {
	if path == "" {
		return nil
	}
	dirs := []string{filepath.Dir(path)}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		// A dangling link: watch where its target will appear.
		if t, lerr := os.Readlink(path); lerr == nil {
			if !filepath.IsAbs(t) {
				t = filepath.Join(filepath.Dir(path), t)
			}
			target = t
		}
	}
	if target != "" {
		if d := filepath.Dir(target); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}
