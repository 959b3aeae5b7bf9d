// Package cli holds the pinhole command line: offline tools (manifest lint,
// endpoints, config check, policy show, run, lab) and clients of pinholed's API.
package cli

import (
	"io"
	"log/slog"

	"github.com/spf13/cobra"
)

// ExitError carries the process exit code a command wants without printing
// anything more; main exits with Code.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return "exit status" }

var commands []func() *cobra.Command

// register adds a top-level command; each command file calls it from init.
func register(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

// NewRoot builds the whole command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "pinhole",
		Short: "Per-app default-deny networking for embedded Linux, the Azure Sphere way",
		Long: `pinhole blocks every connection by default and opens, per app, exactly the hosts
its app_manifest.json names. This tool lints manifests, prints the endpoints a device
needs, checks configs, starts apps in their identity, and talks to pinholed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

// logger returns a text logger on w for commands that need one.
func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
