//go:build !linux

package netns

import "errors"

// Of returns the network namespace of process pid (Linux only).
func Of(pid int) (ID, error) { return ID{}, errors.ErrUnsupported }

// IsInitial reports whether the process is in the initial network namespace
// (Linux only).
func IsInitial() (bool, error) { return false, errors.ErrUnsupported }

// Do runs fn inside the network namespace at path (Linux only).
func Do(path string, fn func() error) error { return errors.ErrUnsupported }

// OfPath returns the network namespace of a namespace file (Linux only).
func OfPath(path string) (ID, error) { return ID{}, errors.ErrUnsupported }

// Pids lists the processes in a network namespace (Linux only).
func Pids(id ID) ([]int, error) { return nil, errors.ErrUnsupported }
