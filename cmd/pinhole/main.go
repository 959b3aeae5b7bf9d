// Command pinhole is the CLI: offline tools and a client of pinholed.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pinhole-net/pinhole/internal/cli"
)

func main() {
	// SIGPIPE too: when the reader of our output goes away (pinhole lab demo |
	// head), commands stop and clean up instead of dying on the spot.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	err := cli.NewRoot().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	var exit *cli.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.Code)
	}
	if errors.Is(err, syscall.EPIPE) {
		os.Exit(141) // the reader went away (| head): as if killed by SIGPIPE, without a message
	}
	fmt.Fprintln(os.Stderr, "pinhole:", err)
	os.Exit(1)
}
