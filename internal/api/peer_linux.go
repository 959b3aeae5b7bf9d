package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerOf reads the credentials of a Unix socket's peer.
func peerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return Peer{}
	}
	p := Peer{Known: true, PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	if cred.Pid > 0 {
		p.Groups = procGroups(int(cred.Pid))
	}
	return p
}

// procGroups reads a process's supplementary groups from /proc; nil if the
// process is gone.
func procGroups(pid int) []uint32 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	return parseGroups(data)
}

// ListenUnix listens on a Unix socket at path with mode 0660, owned by root
// and group (nil: root's group). A stale socket left by a killed pinholed is
// replaced; one that another process still answers on is an error.
func ListenUnix(path string, group *uint32) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("api socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s: another process is listening on it (is pinholed already running?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale api socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on api socket: %w", err)
	}
	gid := 0
	if group != nil {
		gid = int(*group)
	}
	if err := os.Chown(path, 0, gid); err != nil && !(errors.Is(err, syscall.EPERM) && os.Geteuid() != 0) {
		l.Close()
		return nil, fmt.Errorf("api socket owner: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("api socket mode: %w", err)
	}
	return l, nil
}
