package cli

import (
	"fmt"
	"os"

	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/runas"
	"github.com/spf13/cobra"
)

func init() { register(newRunCmd) }

func newRunCmd() *cobra.Command {
	var cfgPath, app, asUser string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "run --app NAME [--config FILE] [--user USER] -- CMD [ARGS...]",
		Short: "Start a program inside an app's identity (for devices without systemd)",
		Long: `Start CMD as the app NAME of pinholed's config, so that the firewall treats its
connections as that app's: pinhole moves itself into the app's cgroup (for a
cgroup identity), drops to the app's user and group (for a uid or user
identity, or --user), then execs CMD. Sockets keep the identity they were
created with, so the app must be started this way (or by a service manager
that puts it there), not moved later.

With systemd, use the unit instead: User= for a uid identity, or a Slice= or
the service's own cgroup for a cgroup identity (see docs/deploy.md).`,
		Example: `  pinhole run --app telemetry -- /opt/telemetry/bin/app --hub contoso-hub
  pinhole run --app webfetch --user webfetch -- curl https://api.contoso.example/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			a := cfg.App(app)
			if a == nil {
				return fmt.Errorf("%s has no app %q", cfgPath, app)
			}
			target, err := runas.Resolve(*a, asUser, runas.SystemUsers{})
			if err != nil {
				return err
			}
			if dryRun {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "would run %q as app %s: %s\n", args, app, target)
				return err
			}
			return runas.Exec(target, args, os.Environ())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "/etc/pinhole/pinhole.yaml", "pinholed config file")
	cmd.Flags().StringVar(&app, "app", "", "the app whose identity to take (required)")
	cmd.Flags().StringVar(&asUser, "user", "", "also switch to this user (name or uid); for cgroup-identified apps")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the identity and command instead of running it")
	_ = cmd.MarkFlagRequired("app")
	return cmd
}
