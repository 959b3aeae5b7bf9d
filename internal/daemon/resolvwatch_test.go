package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

type fakeNotifier struct {
	ch      chan struct{}
	mu      sync.Mutex
	watched [][]string
}

func (f *fakeNotifier) watch(dirs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watched = append(f.watched, dirs)
	return nil
}
func (f *fakeNotifier) events() <-chan struct{} { return f.ch }
func (f *fakeNotifier) close() error            { return nil }

// TestResolvWatcher: the watcher reloads when the file's servers differ
// from the running ones, once per burst of events, retries a failed
// reload on events only for new content (the poll retries it), and polls
// without events.
func TestResolvWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ns := func(s ...string) []netip.AddrPort {
			var out []netip.AddrPort
			for _, x := range s {
				out = append(out, netip.MustParseAddrPort(x))
			}
			return out
		}
		var (
			mu       sync.Mutex
			file     []netip.AddrPort // what resolv.conf says
			running  []netip.AddrPort // the running policy's upstreams
			path     = "/etc/resolv.conf"
			reloads  int
			failNext bool
		)
		w := &resolvWatcher{log: slog.New(slog.DiscardHandler), poll: 30 * time.Second, settle: 100 * time.Millisecond,
			current: func() (string, []netip.AddrPort) {
				mu.Lock()
				defer mu.Unlock()
				return path, running
			},
			read: func(string) ([]netip.AddrPort, error) {
				mu.Lock()
				defer mu.Unlock()
				if len(file) == 0 {
					return nil, errors.New("no nameserver line")
				}
				return file, nil
			},
			reload: func() error {
				mu.Lock()
				defer mu.Unlock()
				reloads++
				if failNext {
					return errors.New("broken manifest")
				}
				running = file
				return nil
			},
		}
		n := &fakeNotifier{ch: make(chan struct{}, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.run(ctx, n)
		}()
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return reloads
		}
		set := func(ups []netip.AddrPort, fail bool) {
			mu.Lock()
			file, failNext = ups, fail
			mu.Unlock()
		}
		event := func() {
			n.ch <- struct{}{}
			synctest.Wait()
		}

		synctest.Wait()
		if got := count(); got != 0 {
			t.Fatalf("reloads at start with an unchanged (empty) file = %d, want 0", got)
		}
		// A burst of events (truncate, write) is one reload after it settles.
		set(ns("192.0.2.1:53"), false)
		event()
		event()
		if got := count(); got != 0 {
			t.Errorf("reloaded before the events settled: %d", got)
		}
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		if got := count(); got != 1 {
			t.Errorf("reloads after the burst = %d, want 1", got)
		}
		// An event that changes nothing reloads nothing.
		event()
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		if got := count(); got != 1 {
			t.Errorf("reloads after an event without a change = %d, want 1", got)
		}
		// A failed reload is not retried for the same content...
		set(ns("192.0.2.2:53"), true)
		event()
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		event()
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		if got := count(); got != 2 {
			t.Errorf("reloads after a failure and another event = %d, want 2 (no retry of the same servers)", got)
		}
		// ...until the poll retries it...
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := count(); got != 3 {
			t.Errorf("reloads after the poll retried the failed servers = %d, want 3", got)
		}
		// ...and the poll finds new content without an event.
		set(ns("192.0.2.3:53"), false)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := count(); got != 4 {
			t.Errorf("reloads after the poll = %d, want 4", got)
		}
		mu.Lock()
		if !slices.Equal(running, ns("192.0.2.3:53")) {
			t.Errorf("running upstreams %v, want 192.0.2.3:53", running)
		}
		mu.Unlock()
		cancel()
		<-done
		n.mu.Lock()
		defer n.mu.Unlock()
		if len(n.watched) == 0 || !slices.Equal(n.watched[0], []string{"/etc"}) {
			t.Errorf("watched %v, want /etc first", n.watched)
		}
	})
}

// TestWatchDirs: the file's directory, and its symlink target's.
func TestWatchDirs(t *testing.T) {
	dir := t.TempDir()
	etc, run := filepath.Join(dir, "etc"), filepath.Join(dir, "run", "resolve")
	for _, d := range []string{etc, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(run, "stub-resolv.conf"), filepath.Join(etc, "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	// Dangling at first (resolved has not written it yet), then present.
	if diff := cmp.Diff([]string{etc, run}, watchDirs(filepath.Join(etc, "resolv.conf"))); diff != "" {
		t.Errorf("dangling link (-want +got):\n%s", diff)
	}
	if err := os.WriteFile(filepath.Join(run, "stub-resolv.conf"), []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{etc, run}, watchDirs(filepath.Join(etc, "resolv.conf"))); diff != "" {
		t.Errorf("link (-want +got):\n%s", diff)
	}
	plain := filepath.Join(run, "plain.conf")
	if diff := cmp.Diff([]string{run}, watchDirs(plain)); diff != "" {
		t.Errorf("plain file (-want +got):\n%s", diff)
	}
	if got := watchDirs(""); got != nil {
		t.Errorf("no file: %v", got)
	}
}
