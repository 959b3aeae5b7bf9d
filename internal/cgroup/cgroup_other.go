//go:build !linux

package cgroup

import (
	"errors"
	"os"
)

// Root returns where the cgroup v2 hierarchy is mounted (Linux only).
func Root() (string, error) { return "", errors.ErrUnsupported }

// Path returns the absolute directory of rel under Root (Linux only).
func Path(rel string) (string, error) { return "", errors.ErrUnsupported }

// ID returns the cgroup id of rel (Linux only).
func ID(rel string) (uint64, error) { return 0, errors.ErrUnsupported }

// Create makes rel and its parents (Linux only).
func Create(rel string) error { return errors.ErrUnsupported }

// Remove deletes rel and its children (Linux only).
func Remove(rel string) error { return errors.ErrUnsupported }

// Enter moves process pid into rel (Linux only).
func Enter(rel string, pid int) error { return errors.ErrUnsupported }

// OpenDir opens rel's directory (Linux only).
func OpenDir(rel string) (*os.File, error) { return nil, errors.ErrUnsupported }

// Of returns the cgroup v2 path of process pid (Linux only).
func Of(pid int) (string, error) { return "", errors.ErrUnsupported }

// Procs lists the processes directly in rel (Linux only).
func Procs(rel string) ([]int, error) { return nil, errors.ErrUnsupported }

// Populated reports whether any process is in rel or below it (Linux only).
func Populated(rel string) (bool, error) { return false, errors.ErrUnsupported }

// Kill kills every process in rel and below it (Linux only).
func Kill(rel string) error { return errors.ErrUnsupported }
