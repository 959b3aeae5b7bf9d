package cli

import (
	"fmt"

	"github.com/pinhole-net/pinhole/internal/buildinfo"
	"github.com/spf13/cobra"
)

func init() { register(newVersionCmd) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "pinhole", buildinfo.String())
			return err
		},
	}
}
