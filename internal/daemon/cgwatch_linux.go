package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/cgroup"
)

// inotifier watches directories (cgroup directories, or resolv.conf's)
// with inotify.
type inotifier struct {
	f    *os.File
	fd   int
	root string
	mask uint32
	ch   chan struct{}
	done chan struct{}

	mu  sync.Mutex
	wds map[string]int // absolute dir -> watch descriptor
}

// newNotifier watches cgroup directories for subdirectories that come and go.
func newNotifier() (notifier, error) {
	root, err := cgroup.Root()
	if err != nil {
		return nil, err
	}
	return asNotifier(newInotifier(root, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_DELETE_SELF|unix.IN_ONLYDIR))
}

// newFileNotifier watches directories (absolute paths) for files that are
// written, created, renamed or deleted, as resolv.conf is.
func newFileNotifier() (notifier, error) {
	return asNotifier(newInotifier("/", unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_CLOSE_WRITE|unix.IN_MODIFY|unix.IN_DELETE_SELF|unix.IN_ONLYDIR))
}

// asNotifier keeps a failed *inotifier from becoming a non-nil interface.
func asNotifier(n *inotifier, err error) (notifier, error) {
	if err != nil {
		return nil, err
	}
	return n, nil
}

func newInotifier(root string, mask uint32) (*inotifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	n := &inotifier{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, root: root, mask: mask,
		ch: make(chan struct{}, 1), done: make(chan struct{}), wds: map[string]int{}}
	go n.read()
	return n, nil
}

func (n *inotifier) read() {
	defer close(n.done)
	buf := make([]byte, 4096)
	for {
		m, err := n.f.Read(buf)
		if err != nil {
			return
		}
		n.forgetIgnored(buf[:m])
		select {
		case n.ch <- struct{}{}:
		default:
		}
	}
}

// forgetIgnored drops the watches the kernel removed (their directory was
// deleted), so that watch adds them again when the directory comes back.
func (n *inotifier) forgetIgnored(b []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int(int32(binary.NativeEndian.Uint32(b[0:4])))
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := binary.NativeEndian.Uint32(b[12:16])
		if mask&unix.IN_IGNORED != 0 {
			for abs, w := range n.wds {
				if w == wd {
					delete(n.wds, abs)
				}
			}
		}
		next := unix.SizeofInotifyEvent + int(nameLen)
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}

func (n *inotifier) events() <-chan struct{} { return n.ch }

func (n *inotifier) watch(dirs []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[string]bool{}
	var errs []error
	for _, d := range dirs {
		abs := filepath.Join(n.root, d)
		want[abs] = true
		if _, ok := n.wds[abs]; ok {
			continue
		}
		wd, err := unix.InotifyAddWatch(n.fd, abs, n.mask)
		if err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", abs, err))
			continue
		}
		n.wds[abs] = wd
	}
	for abs, wd := range n.wds {
		if !want[abs] {
			unix.InotifyRmWatch(n.fd, uint32(wd))
			delete(n.wds, abs)
		}
	}
	return errors.Join(errs...)
}

func (n *inotifier) close() error {
	err := n.f.Close()
	<-n.done
	return err
}
