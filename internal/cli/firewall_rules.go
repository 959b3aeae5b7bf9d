package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newFirewallRulesCmd is `pinhole firewall rules`: the rules as pinholed's
// API shows them, for users without root and for devices reached over the
// service link (`pinhole firewall show` reads the kernel itself).
func newFirewallRulesCmd() *cobra.Command {
	var f *clientFlags
	cmd := &cobra.Command{
		Use:   "rules [--json]",
		Short: "Print the firewall rules with packet and byte counters, asking pinholed",
		Long: `Print pinhole's firewall rules per netfilter hook (INPUT, FORWARD, OUTPUT filter,
OUTPUT nat), each rule with its packet and byte counters and what it is for,
as the running pinholed reports them (GET /net/firewall/rulesets). This works
for members of the pinhole group and over the service link (--device); "show"
prints the same by reading the kernel directly, as root.

--json prints Azure Sphere's {"rulesets": [...]} shape plus pinhole's fields.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := f.client().Rulesets(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return writeRulesetsJSON(cmd.OutOrStdout(), rs)
			}
			if len(rs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "pinholed reports no firewall table")
				return &ExitError{Code: 1}
			}
			return writeRulesets(cmd.OutOrStdout(), rs)
		},
	}
	f = addClientFlags(cmd)
	return cmd
}
