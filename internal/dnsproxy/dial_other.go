//go:build !linux

package dnsproxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"
)

type udpConn interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
	SyscallConn() (syscall.RawConn, error)
}

// drainUDP: without Linux's MSG_DONTWAIT semantics at hand, a pooled
// socket is not reused (the error closes it).
func drainUDP(c udpConn) error { return errors.New("socket reuse needs Linux") }

// dialUDP opens a new UDP socket connected to addr; marks need Linux.
func dialUDP(addr netip.AddrPort, mark uint32) (udpConn, error) {
	d := net.Dialer{Control: markControl(mark)}
	c, err := d.Dial("udp", addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// stubSender sends answers from a stub's socket.
type stubSender struct{ pc *net.UDPConn }

func newStubSender(pc *net.UDPConn) stubSender { return stubSender{pc: pc} }

func (s stubSender) send(b []byte, to netip.AddrPort) error {
	_, err := s.pc.WriteToUDPAddrPort(b, to)
	return err
}
