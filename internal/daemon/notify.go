package daemon

import (
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notify tells systemd about the daemon's state (sd_notify); without
// NOTIFY_SOCKET it does nothing.
func notify(states ...string) {
	sd.SdNotify(false, strings.Join(states, "\n"))
}

// watchdogInterval is systemd's WatchdogSec for this process, 0 if off.
func watchdogInterval() time.Duration {
	iv, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return iv
}
