//go:build !linux

package daemon

import "errors"

func newNotifier() (notifier, error) { return nil, errors.ErrUnsupported }
