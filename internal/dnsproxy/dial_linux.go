package dnsproxy

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// udpConn is a UDP socket connected to one upstream.
type udpConn interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
	SyscallConn() (syscall.RawConn, error)
}

// dialUDP opens a new UDP socket connected to addr, marked with mark: the
// kernel picks a random source port. It is the net package's dial without
// the address parsing and the getsockname and getpeername calls, which cost
// as much as the rest on this hot path; the file is non-blocking, so reads
// and deadlines go through the runtime poller.
func dialUDP(addr netip.AddrPort, mark uint32) (udpConn, error) {
	a := addr.Addr().Unmap()
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	if a.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	if mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set socket mark %#x: %w", mark, err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return os.NewFile(uintptr(fd), "dns upstream "+addr.String()), nil
}

// drainUDP discards the datagrams queued on an idle pooled socket, so that
// answers forged in advance for guessed IDs cannot wait there for the next
// question. The usual case is one recv that finds nothing.
func drainUDP(c udpConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var buf [1]byte
	var rerr error
	err = rc.Control(func(fd uintptr) {
		for {
			_, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC)
			if rerr != nil {
				if errors.Is(rerr, unix.EAGAIN) {
					rerr = nil
					return
				}
				if !errors.Is(rerr, unix.EINTR) && !errors.Is(rerr, unix.ECONNREFUSED) {
					return
				}
			}
		}
	})
	return errors.Join(err, rerr)
}
