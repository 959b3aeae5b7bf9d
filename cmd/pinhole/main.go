// Command pinhole is the CLI: offline tools and a client of pinholed.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/pinhole-net/pinhole/internal/cli"
	"github.com/pinhole-net/pinhole/internal/daemon"
)

func main() {
	// One binary can be both: installed as pinholed (a link to pinhole), it
	// is the daemon, which saves a device the flash of a second copy of the
	// code they share.
	if filepath.Base(os.Args[0]) == "pinholed" {
		os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
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
