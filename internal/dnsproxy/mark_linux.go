package dnsproxy

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl sets SO_MARK on pinholed's upstream sockets so that the
// firewall's system chain lets them out. Mark 0 leaves sockets unmarked.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("set socket mark %#x: %w", mark, err)
		}
		return nil
	}
}
