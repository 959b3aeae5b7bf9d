//go:build !linux

package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/pinhole-net/pinhole/internal/audit"
)

type noSource struct{}

func (noSource) Run(context.Context, audit.Sink) error { return errors.ErrUnsupported }

// nflogSource: NFLOG is Linux only.
func nflogSource(uint16, *slog.Logger) audit.Source { return noSource{} }
