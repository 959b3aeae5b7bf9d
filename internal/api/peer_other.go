//go:build !linux

package api

import (
	"errors"
	"net"
)

func peerOf(net.Conn) Peer { return Peer{} }

// ListenUnix needs Linux (peer credentials).
func ListenUnix(string, *uint32) (net.Listener, error) { return nil, errors.ErrUnsupported }
