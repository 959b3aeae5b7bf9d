package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/firewall"
)

func init() { register(newFirewallCmd) }

func newFirewallCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firewall",
		Short: "Inspect pinhole's firewall (nftables table inet pinhole)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newFirewallShowCmd(), newFirewallRulesCmd())
	return cmd
}

func newFirewallShowCmd() *cobra.Command {
	var (
		asJSON    bool
		netnsPath string
	)
	cmd := &cobra.Command{
		Use:   "show [--json] [--netns PATH]",
		Short: "Print the firewall rules per hook with packet and byte counters",
		Long: `Print pinhole's firewall rules as the kernel has them, per netfilter hook
(INPUT, FORWARD, OUTPUT filter, OUTPUT nat), each rule with its packet and
byte counters and what it is for. The rules of the per-app chains follow the
base chain that reaches them.

This reads the kernel's table directly (it needs root or CAP_NET_ADMIN) and
works whether or not pinholed runs. --json prints the shape of Azure Sphere's
GET /net/firewall/rulesets plus pinhole's fields. --netns reads the table of
another network namespace (a /run/netns/NAME or /proc/PID/ns/net file).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := firewall.Options{ReadOnly: true}
			if netnsPath != "" {
				ns, err := os.Open(netnsPath)
				if err != nil {
					return fmt.Errorf("--netns: %w", err)
				}
				defer ns.Close()
				opts.NetNSFd = int(ns.Fd())
			}
			fw, err := firewall.New(opts)
			if err != nil {
				return permissionHint(err)
			}
			defer fw.Close()
			rs, err := fw.Rulesets()
			if err != nil {
				return permissionHint(err)
			}
			if asJSON {
				return writeRulesetsJSON(cmd.OutOrStdout(), rs)
			}
			if len(rs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no pinhole table (inet "+firewall.TableName+") in this network namespace")
				return &ExitError{Code: 1}
			}
			return writeRulesets(cmd.OutOrStdout(), rs)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {\"rulesets\": [...]}")
	cmd.Flags().StringVar(&netnsPath, "netns", "", "read the table of the network namespace this file names")
	return cmd
}

func permissionHint(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (reading nftables needs root or CAP_NET_ADMIN)", err)
	}
	return err
}

func writeRulesetsJSON(w io.Writer, rs []firewall.Ruleset) error {
	if rs == nil {
		rs = []firewall.Ruleset{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Rulesets []firewall.Ruleset `json:"rulesets"`
	}{rs})
}

// writeRulesets prints one table per hook.
func writeRulesets(w io.Writer, rs []firewall.Ruleset) error {
	for i, r := range rs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		valid := ""
		if !r.IsValid {
			valid = ", some rules not fully decoded"
		}
		fmt.Fprintf(w, "%s (%s chain %s, policy %s%s)\n", r.Hook, r.Type, r.Chain, r.Policy, valid)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CHAIN\tPACKETS\tBYTES\tCOMMENT\tRULE")
		for _, x := range r.Rules {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", x.Chain, strconv.FormatUint(x.Packets, 10), humanBytes(x.Bytes), x.Comment, x.Match)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// humanBytes prints a byte count with a binary unit.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ci", float64(n)/float64(div), "KMGTPE"[exp])
}
