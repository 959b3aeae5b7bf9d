package dnsproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

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
	return &upConn{File: os.NewFile(uintptr(fd), "dns upstream "+addr.String()), fd: fd}, nil
}

// Sends on the hot path are raw system calls, without the runtime's
// entersyscall: a UDP send on a non-blocking socket never sleeps, but it
// delivers the datagram inline (loopback, veth) and may take tens of
// microseconds, long enough for the runtime to hand the P to another thread
// (a futex wake and a context switch per query at one query outstanding).
// A full send buffer (EAGAIN) falls back to the poller.

// upConn is a pooled upstream socket: reads go through the poller, writes
// are raw.
type upConn struct {
	*os.File
	fd int // valid until Close; a pooled socket has one user at a time
}

func (c *upConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return c.File.Write(b)
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	switch e {
	case 0:
		return int(n), nil
	case unix.EAGAIN, unix.EINTR:
		return c.File.Write(b)
	}
	return 0, &os.PathError{Op: "write", Path: c.Name(), Err: e}
}

// stubSender sends answers from a stub's socket.
type stubSender struct {
	pc *net.UDPConn
	rc syscall.RawConn
}

func newStubSender(pc *net.UDPConn) stubSender {
	rc, _ := pc.SyscallConn()
	return stubSender{pc: pc, rc: rc}
}

func (s stubSender) send(b []byte, to netip.AddrPort) error {
	if s.rc == nil || len(b) == 0 {
		_, err := s.pc.WriteToUDPAddrPort(b, to)
		return err
	}
	var (
		sa4 unix.RawSockaddrInet4
		sa6 unix.RawSockaddrInet6
		sa  unsafe.Pointer
		l   uintptr
	)
	port := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	if a := to.Addr(); a.Is4() {
		sa4.Family = unix.AF_INET
		sa4.Addr = a.As4()
		sa, l = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	} else {
		sa6.Family = unix.AF_INET6
		sa6.Addr = a.As16()
		port = (*[2]byte)(unsafe.Pointer(&sa6.Port))
		sa, l = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
		if a.Zone() != "" {
			_, err := s.pc.WriteToUDPAddrPort(b, to) // scope ids: leave it to net
			return err
		}
	}
	port[0], port[1] = byte(to.Port()>>8), byte(to.Port())
	var e unix.Errno
	err := s.rc.Control(func(fd uintptr) {
		_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(sa), l)
	})
	switch {
	case err != nil:
		return err
	case e == unix.EAGAIN || e == unix.EINTR:
		_, err := s.pc.WriteToUDPAddrPort(b, to)
		return err
	case e != 0:
		return e
	}
	return nil
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
