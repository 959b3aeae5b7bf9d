package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
)

func init() { register(newAuditCmd) }

func newAuditCmd() *cobra.Command {
	var (
		f      *clientFlags
		q      api.AuditQuery
		since  string
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "audit [--app NAME] [--since WHEN] [--limit N] [--follow] [--json]",
		Short: "Show the connections the firewall denied: which app, where to, which host name",
		Long: `Show the connections pinhole's firewall denied (or, in audit mode, would have
denied), newest last: when, which app (or "unmanaged" for processes that
belong to no app, "system" for pinholed), the direction, protocol, remote
address and port, and the host name the app had looked that address up as.
Repeats of the same flow within a minute are one line with a count.

An address with no host name was never looked up by that app: it used a
hard-coded address, or one another app resolved (then "learned by" names it).

Refused DNS lookups (a name not in the app's AllowedConnections, or an
answer rebinding protection refuses) are shown too, as PROTO dns with the
name asked and the reason; at most 10 a second per app are recorded. In
audit mode such lookups are answered instead, shown with the addresses
answered, and the connections that follow to those addresses show the name
as their host.

--follow keeps printing new denials as they happen, until interrupted.
--json prints the records as JSON (one object per line with --follow).`,
		Example: `  pinhole audit --app telemetry --since 1h
  pinhole audit --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != "" {
				parsed, perr := api.ParseAuditQuery(url.Values{"since": {since}}, time.Now())
				if perr != nil {
					return fmt.Errorf("--since %q: want an RFC 3339 time (2006-01-02T15:04:05Z) or a duration (10m, 2h)", since)
				}
				q.Since = parsed.Since
			}
			c := f.client()
			out := cmd.OutOrStdout()
			if !follow {
				recs, err := c.Audit(cmd.Context(), q)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(out, api.AuditRecords{Records: recs})
				}
				return writeAudit(out, recs, time.Now())
			}
			if !f.json {
				fmt.Fprintln(out, auditHeader)
			}
			enc := json.NewEncoder(out)
			return c.FollowAudit(cmd.Context(), q, func(r audit.Record) error {
				if f.json {
					return enc.Encode(r)
				}
				_, err := fmt.Fprintln(out, auditLine(r, time.Now()))
				return err
			})
		},
	}
	f = addClientFlags(cmd)
	cmd.Flags().StringVar(&q.App, "app", "", "only this app (or unmanaged, system)")
	cmd.Flags().StringVar(&since, "since", "", "only denials since `WHEN`: a duration back from now (30m, 2h) or an RFC 3339 time")
	cmd.Flags().IntVar(&q.Limit, "limit", 0, "only the newest `N` records")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new denials until interrupted")
	return cmd
}

// The follow mode prints line by line, so its columns have fixed widths.
const auditHeader = "TIME      APP              ACTION  DIR  PROTO   REMOTE                                          COUNT  HOST"

func auditLine(r audit.Record, now time.Time) string {
	action, dir, proto, remote, host := auditFields(r)
	return fmt.Sprintf("%-9s %-16s %-7s %-4s %-7s %-47s %-6d %s", when(r.Last, now), r.App, action, dir, proto, remote, r.Count, host)
}

// maxShownAddrs bounds the answered addresses a DNS line shows.
const maxShownAddrs = 4

// auditFields words a record's verdict, direction, protocol, remote end and
// host for people. A DNS record's remote is the name looked up, and its
// host column says what enforce mode would have done and what was answered.
func auditFields(r audit.Record) (action, dir, proto, remote, host string) {
	action = "denied"
	if r.Verdict == "audit" {
		action = "audit"
	}
	if r.Kind == audit.KindDNS {
		host = r.Reason
		if len(r.Addrs) > 0 {
			var addrs []string
			for _, a := range r.Addrs[:min(len(r.Addrs), maxShownAddrs)] {
				addrs = append(addrs, a.String())
			}
			if len(r.Addrs) > maxShownAddrs {
				addrs = append(addrs, fmt.Sprintf("%d more", len(r.Addrs)-maxShownAddrs))
			}
			host += "; answered " + strings.Join(addrs, ", ")
		}
		return action, "out", "dns", "lookup " + r.Name + " " + r.QType, host
	}
	dir, proto = string(r.Direction), r.Proto.String()
	ap := r.Remote()
	remote = ap.Addr().String()
	if ap.Port() != 0 {
		remote = ap.String()
	}
	if r.ICMP != nil {
		remote += fmt.Sprintf(" (type %d code %d)", r.ICMP.Type, r.ICMP.Code)
	}
	host = strings.Join(r.Hosts, ", ")
	if host == "" {
		host = "(not looked up by this app"
		if len(r.LearnedBy) > 0 {
			host += "; learned by " + strings.Join(r.LearnedBy, ", ")
		}
		host += ")"
	}
	return action, dir, proto, remote, host
}

func writeAudit(w io.Writer, recs []audit.Record, now time.Time) error {
	if len(recs) == 0 {
		_, err := fmt.Fprintln(w, "no denied connections recorded")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tAPP\tACTION\tDIR\tPROTO\tREMOTE\tCOUNT\tHOST")
	for _, r := range recs {
		action, dir, proto, remote, host := auditFields(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", when(r.Last, now), r.App, action, dir, proto, remote, r.Count, host)
	}
	return tw.Flush()
}
