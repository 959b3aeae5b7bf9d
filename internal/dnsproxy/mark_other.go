//go:build !linux

package dnsproxy

import (
	"errors"
	"syscall"
)

// markControl: socket marks exist only on Linux.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return errors.New("socket marks need Linux")
	}
}
