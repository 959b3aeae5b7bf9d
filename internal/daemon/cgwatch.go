package daemon

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// cgroupSetter is the part of the firewall the watcher drives.
type cgroupSetter interface {
	SetCgroupID(app string, id uint64) error
}

// cgWatcher follows the cgroups of apps identified by cgroup. systemd
// deletes and recreates a unit's cgroup on every start, which gives it a new
// id; the firewall matches ids, so each new one must reach it. inotify on
// the parent directories tells at once; a slow poll backs it up.
type cgWatcher struct {
	fw   cgroupSetter
	log  *slog.Logger
	id   func(rel string) (uint64, error)
	poll time.Duration
	// present, if set, is told each app's state after every scan.
	present func(app string, ok bool)

	mu      sync.Mutex
	apps    map[string]string // app -> cgroup path
	known   map[string]uint64 // the id the firewall has, per app
	missing map[string]bool   // apps whose cgroup was missing at the last scan
	kick    chan struct{}
}

func newCgWatcher(fw cgroupSetter, id func(string) (uint64, error), log *slog.Logger) *cgWatcher {
	return &cgWatcher{fw: fw, id: id, log: log, poll: 10 * time.Second,
		apps: map[string]string{}, known: map[string]uint64{}, missing: map[string]bool{},
		kick: make(chan struct{}, 1)}
}

// setPolicy takes the cgroup apps of a newly applied policy. The firewall
// resolved their ids itself while applying it, so what the watcher knew is
// forgotten and the next scan hands every present id over again (the
// firewall ignores an id it has).
func (w *cgWatcher) setPolicy(p *policy.Policy) {
	w.mu.Lock()
	w.apps = map[string]string{}
	for _, a := range p.Apps {
		if a.Identity.Kind == policy.ByCgroup {
			w.apps[a.Name] = a.Identity.Cgroup
		}
	}
	w.known = map[string]uint64{}
	w.mu.Unlock()
	w.trigger()
}

func (w *cgWatcher) trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// idOf returns the cgroup id the firewall matches for app, 0 if none.
func (w *cgWatcher) idOf(app string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.known[app]
}

// scan hands new ids to the firewall and returns the directories to watch:
// for each app, its cgroup's parent or, while that is missing, the deepest
// ancestor that exists.
func (w *cgWatcher) scan() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var dirs []string
	for app, rel := range w.apps {
		id, err := w.id(rel)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !w.missing[app] {
				w.log.Warn("app's cgroup does not exist (yet): its processes are treated as unmanaged until it appears", "app", app, "cgroup", rel)
				w.missing[app] = true
			}
			delete(w.known, app)
		case err != nil:
			w.log.Warn("read app's cgroup id", "app", app, "cgroup", rel, "err", err)
		case id != w.known[app]:
			if err := w.fw.SetCgroupID(app, id); err != nil {
				w.log.Error("give the firewall an app's new cgroup id", "app", app, "cgroup", rel, "id", id, "err", err)
				break
			}
			if w.missing[app] || w.known[app] != 0 {
				w.log.Info("app's cgroup (re)appeared; firewall follows its new id", "app", app, "cgroup", rel, "id", id)
			}
			w.known[app] = id
			delete(w.missing, app)
		}
		if w.present != nil {
			w.present(app, w.known[app] != 0)
		}
		dirs = append(dirs, w.watchDir(rel))
	}
	return dirs
}

// watchDir is the directory whose entries tell when rel appears: its parent
// if that exists, else the deepest existing ancestor.
func (w *cgWatcher) watchDir(rel string) string {
	dir := path.Dir(rel)
	for dir != "." && dir != "/" {
		if _, err := w.id(dir); err == nil {
			return dir
		}
		dir = path.Dir(dir)
	}
	return ""
}

// run scans on every inotify event, every poll interval and on trigger,
// until ctx ends.
func (w *cgWatcher) run(ctx context.Context, n notifier) {
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	var events <-chan struct{}
	if n != nil {
		events = n.events()
	}
	for {
		dirs := w.scan()
		if n != nil {
			if err := n.watch(dirs); err != nil {
				w.log.Debug("watch cgroup directories", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.kick:
		case <-events:
		}
	}
}

// notifier tells when entries of watched directories change.
type notifier interface {
	// watch makes dirs (relative to the cgroup2 root, "" for the root) the
	// watched set.
	watch(dirs []string) error
	events() <-chan struct{}
	close() error
}
