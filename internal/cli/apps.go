package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/learned"
)

func init() {
	register(newAppsCmd)
	register(newAppCmd)
}

func newAppsCmd() *cobra.Command {
	var f *clientFlags
	cmd := &cobra.Command{
		Use:   "apps [--json]",
		Short: "List the apps pinholed enforces, with what they reached and were denied",
		Long: `List the apps of the running policy: how each app's processes are recognised
(user ID or cgroup), how many host and address rules its manifest gives it,
the host names its DNS lookups opened (learned), and how many new connections
the firewall let out or denied for it since the table was installed.

For the rules and learned addresses of one app: pinhole app NAME.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			apps, err := f.client().Apps(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), api.Apps{Apps: apps})
			}
			return writeApps(cmd.OutOrStdout(), apps)
		},
	}
	f = addClientFlags(cmd)
	return cmd
}

// maxHostsShown is how many learned host names the apps table lists.
const maxHostsShown = 3

func writeApps(w io.Writer, apps []api.AppSummary) error {
	if len(apps) == 0 {
		_, err := fmt.Fprintln(w, "no apps in the running policy")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tIDENTITY\tRULES\tALLOWED\tDENIED\tLEARNED HOSTS")
	for _, a := range apps {
		hosts := a.LearnedHosts
		learned := listOr(hosts, "-")
		if len(hosts) > maxHostsShown {
			learned = strings.Join(hosts[:maxHostsShown], ", ") + fmt.Sprintf(" (+%d more)", len(hosts)-maxHostsShown)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", a.Name, identityText(a.Identity), a.Hosts+a.Addresses,
			a.Packets.Allowed, a.Packets.Denied, learned)
	}
	return tw.Flush()
}

func newAppCmd() *cobra.Command {
	var f *clientFlags
	cmd := &cobra.Command{
		Use:   "app NAME [--json]",
		Short: "Show one app: identity, what it may reach, what it learned, its counters",
		Long: `Show one app of the running policy: its manifest, how its processes are
recognised, the hosts and addresses it may reach (and on which ports), the
addresses its DNS lookups opened with when each closes again, its DNS queries
by verdict and its firewall counters. NAME "system" shows what pinholed itself
may reach.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := f.client().App(cmd.Context(), args[0])
			if err != nil {
				if api.IsNotFound(err) {
					return fmt.Errorf("%w (pinhole apps lists the apps)", err)
				}
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			return writeApp(cmd.OutOrStdout(), a, time.Now())
		},
	}
	f = addClientFlags(cmd)
	return cmd
}

func writeApp(w io.Writer, a api.App, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	name := a.Name
	if c := a.Component; c != nil {
		name += fmt.Sprintf(" (manifest name %q, component %s)", c.Name, c.ComponentID)
	}
	line("app", "%s", name)
	line("identity", "%s", identityText(a.Identity))
	if a.Manifest != "" {
		line("manifest", "%s", a.Manifest)
	}
	if a.DNSPort != 0 {
		line("dns stub", "port %d on 127.0.0.1 and ::1 (its DNS queries are redirected there)", a.DNSPort)
	}
	line("tcp server ports", "%s", portList(a.TCPServerPorts))
	line("udp server ports", "%s", portList(a.UDPServerPorts))
	line("connections", "%d allowed, %d denied (new connections since the table was installed)", a.Packets.Allowed, a.Packets.Denied)
	if len(a.DNSQueries) > 0 {
		var parts []string
		for _, v := range []string{"allowed", "blocked", "rebinding", "ratelimited", "upstream_error", "no_upstream", "invalid", "audit"} {
			if n := a.DNSQueries[v]; n > 0 || v == "allowed" || v == "blocked" {
				parts = append(parts, fmt.Sprintf("%d %s", n, strings.ReplaceAll(v, "_", " ")))
			}
		}
		line("dns queries", "%s", strings.Join(parts, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAY REACH\tPORTS\tFROM")
	if len(a.Rules) == 0 {
		fmt.Fprintln(tw, "(nothing)\t\t")
	}
	for _, r := range a.Rules {
		target := r.Host
		if target == "" {
			target = r.Address
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", target, listOr(r.Ports, "any"), r.Source)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if len(a.Learned) == 0 {
		_, err := fmt.Fprintln(w, "learned: nothing yet (addresses open when the app looks an allowed name up)")
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEARNED HOST\tADDRESS\tCLOSES")
	for _, n := range a.Learned {
		host := n.Name
		if n.Via != "" {
			host += " (via " + n.Via + ")"
		}
		addrs := slices.Clone(n.Addrs)
		slices.SortFunc(addrs, func(x, y learned.AddrEntry) int { return x.Addr.Compare(y.Addr) })
		if len(addrs) == 0 {
			fmt.Fprintf(tw, "%s\t-\t%s\n", host, closes(n.AllowedUntil, now))
		}
		for i, e := range addrs {
			if i > 0 {
				host = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", host, e.Addr, closes(e.Expires, now))
		}
	}
	return tw.Flush()
}

func closes(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", ago(t, now), when(t, now))
}

func portList(ps []uint16) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}
