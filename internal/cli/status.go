package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/api"
)

func init() {
	register(newStatusCmd)
	register(newInterfacesCmd)
}

func newStatusCmd() *cobra.Command {
	var f *clientFlags
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show whether pinholed runs and how: mode, apps, last reload, problems",
		Long: `Ask the running pinholed how it is: its version and uptime, the config it
loaded, whether it enforces or only audits, how many apps it knows and how
many addresses their DNS lookups opened, time sync and proxy state, the
outcome of the last reload, and any part that is not working.

--json prints GET /net/status: Azure Sphere's fields (deviceAuthenticationIsReady,
networkTimeSync, proxy) followed by pinhole's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return writeStatus(cmd.OutOrStdout(), st, time.Now())
		},
	}
	f = addClientFlags(cmd)
	return cmd
}

// writeStatus prints the status as labelled lines.
func writeStatus(w io.Writer, st api.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	line("pinholed", "%s", st.Version)
	line("running", "since %s (up %s)", when(st.Started, now), roughDuration(time.Duration(st.Uptime)*time.Second))
	line("config", "%s (loaded %s)", st.Config, when(st.PolicyLoaded, now))
	mode := st.Mode
	switch st.Mode {
	case "enforce":
		mode += ": connections outside the policy fail and are logged"
	case "audit":
		mode += ": connections outside the policy are logged but let through"
	}
	line("mode", "%s", mode)
	line("unmanaged", "%s (processes that belong to no app)", st.Unmanaged)
	line("apps", "%d", st.Apps)
	line("learned", "%d addresses opened by DNS answers", st.LearnedAddresses)
	line("time sync", "%s", st.NetworkTimeSync)
	line("proxy", "%s", st.Proxy)
	if r := st.LastReload; r != nil {
		if r.OK {
			line("last reload", "ok at %s", when(r.At, now))
		} else {
			line("last reload", "FAILED at %s, the previous policy still runs: %s", when(r.At, now), firstLine(r.Error))
		}
	}
	if len(st.Problems) == 0 {
		line("problems", "none")
	} else {
		for i, p := range st.Problems {
			k := ""
			if i == 0 {
				k = "problems"
			}
			line(k, "%s", p)
		}
	}
	return tw.Flush()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func newInterfacesCmd() *cobra.Command {
	var f *clientFlags
	cmd := &cobra.Command{
		Use:   "interfaces [NAME] [--json]",
		Short: "List the device's network interfaces: up, carrier, addresses",
		Long: `List the device's network interfaces as pinholed sees them (loopback left out):
whether each is up, has a carrier, has an address, and its addresses and
hardware address. --json prints GET /net/interfaces (or /net/interfaces/NAME)
in Azure Sphere's shape.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := f.client()
			var ifs []api.Interface
			if len(args) == 1 {
				i, err := c.Interface(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), i)
				}
				ifs = []api.Interface{i}
			} else {
				var err error
				if ifs, err = c.Interfaces(cmd.Context()); err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), api.Interfaces{Interfaces: ifs})
				}
			}
			return writeInterfaces(cmd.OutOrStdout(), ifs)
		},
	}
	f = addClientFlags(cmd)
	return cmd
}

func writeInterfaces(w io.Writer, ifs []api.Interface) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tUP\tCARRIER\tADDRESSES\tHARDWARE ADDRESS")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	for _, i := range ifs {
		hw := "-"
		if i.HardwareAddress != nil {
			hw = *i.HardwareAddress
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.InterfaceName, yes(i.InterfaceUp), yes(i.ConnectedToNetwork), listOr(i.IPAddresses, "-"), hw)
	}
	return tw.Flush()
}
