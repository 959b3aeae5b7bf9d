package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/api"
)

func init() { register(newReloadCmd) }

func newReloadCmd() *cobra.Command {
	var (
		f      *clientFlags
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "reload [--dry-run] [--json]",
		Short: "Make pinholed load its config and the apps' manifests again",
		Long: `Make pinholed read its config file and every app's manifest again and apply
them: the new firewall table replaces the old one in one step, the addresses
apps already looked up stay open if the new policy still allows them, and
connections that are already established are not touched.

If anything is wrong (a manifest that does not parse, an unknown key in the
config, two apps claiming one port), nothing changes: the running policy stays
and every problem is printed. --dry-run checks and reports without applying.
Same as sending pinholed SIGHUP, but it tells you the outcome.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := f.client().Reload(cmd.Context(), api.ReloadRequest{DryRun: dryRun})
			out := cmd.OutOrStdout()
			var apiErr *api.Error
			if errors.As(err, &apiErr) && apiErr.Code == api.CodeReloadFailed {
				if f.json {
					printJSON(out, apiErr)
				} else {
					fmt.Fprintf(out, "reload failed; the running policy stays: %s\n", apiErr.Message)
					for _, d := range apiErr.Details {
						fmt.Fprintln(out, "  "+d)
					}
				}
				return &ExitError{Code: 1}
			}
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(out, res)
			}
			return writeReload(out, res)
		},
	}
	f = addClientFlags(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the config and manifests and report, without applying")
	return cmd
}

func writeReload(w io.Writer, r api.ReloadResult) error {
	verb := "reloaded"
	if r.DryRun {
		verb = "dry run ok, nothing applied"
	}
	var changes []string
	for _, c := range []struct {
		what  string
		names []string
	}{{"added", r.Added}, {"removed", r.Removed}, {"changed", r.Changed}} {
		if len(c.names) > 0 {
			changes = append(changes, c.what+" "+strings.Join(c.names, ", "))
		}
	}
	fmt.Fprintf(w, "%s: %d apps (%s); %d learned addresses kept; took %.1f ms\n", verb, r.Apps, listOr(changes, "no app changed"), r.KeptLearned, r.Took)
	if !r.DryRun && r.DNSUpstreams != nil {
		fmt.Fprintf(w, "dns upstreams: %s\n", listOr(r.DNSUpstreams, "none (queries of allowed names get SERVFAIL)"))
	}
	if len(r.RestartRequired) > 0 {
		fmt.Fprintf(w, "restart pinholed for these changes to take effect: %s\n", strings.Join(r.RestartRequired, ", "))
	}
	for _, x := range r.Warnings {
		fmt.Fprintln(w, "warning: "+x)
	}
	return nil
}
