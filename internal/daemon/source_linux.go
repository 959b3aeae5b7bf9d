package daemon

import (
	"log/slog"

	"github.com/pinhole-net/pinhole/internal/audit"
)

// nflogSource reads the firewall's NFLOG group.
func nflogSource(group uint16, log *slog.Logger) audit.Source {
	return &audit.NFLOG{Group: group, Logger: log}
}
