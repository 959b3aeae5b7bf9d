//go:build !linux

package daemon

import "errors"

func newNotifier() (notifier, error) { return nil, errors.ErrUnsupported }

func newFileNotifier() (notifier, error) { return nil, errors.ErrUnsupported }
