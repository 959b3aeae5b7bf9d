//go:build !linux

package dnsproxy

import (
	"io"
	"net"
	"net/netip"
	"time"
)

type udpConn interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// dialUDP opens a new UDP socket connected to addr; marks need Linux.
func dialUDP(addr netip.AddrPort, mark uint32) (udpConn, error) {
	d := net.Dialer{Control: markControl(mark)}
	return d.Dial("udp", addr.String())
}
