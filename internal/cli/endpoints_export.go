package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/export"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func newEndpointsExportCmd() *cobra.Command {
	var (
		pf         profileFlags
		format     string
		table      string
		devices    []string
		dnsServers []string
	)
	cmd := &cobra.Command{
		Use:   "export --format nftables|dnsmasq --device PREFIX... [--profile P | --config FILE]",
		Short: "Write the rules a gateway's firewall needs for the devices",
		Long: `Write what the devices must reach as rules for the Linux gateway in front of
them: an nftables table that lets the devices (--device) reach only those
destinations, and the dnsmasq lines that fill its sets with the addresses of
the host names as dnsmasq answers the devices' queries.

With --profile (and its parameters), the rules are pinholed's own endpoints.
With --config, they are everything the device's config allows: pinholed's
endpoints and every app's AllowedConnections (an entry without a port allows
every port, as on Azure Sphere).

  pinhole endpoints export --format nftables --device 192.168.10.0/24 > devices.nft
  pinhole endpoints export --format dnsmasq --device 192.168.10.0/24 > /etc/dnsmasq.d/devices.conf
  nft -f devices.nft && systemctl restart dnsmasq`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(export.Formats, format) {
				return fmt.Errorf("--format %q: want %s", format, strings.Join(export.Formats, " or "))
			}
			if len(devices) == 0 {
				return errors.New("--device is required: the addresses of the devices behind the gateway (a prefix such as 192.168.10.0/24, or an address)")
			}
			devs, err := export.Devices(devices)
			if err != nil {
				return fmt.Errorf("--device: %w", err)
			}
			prof, cfg, err := pf.load(cmd)
			if err != nil {
				return err
			}
			var servers []netip.Addr
			for _, s := range dnsServers {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("--dns-server %q: not an IP address", s)
				}
				servers = append(servers, a)
			}
			rules, title, notes, err := exportRules(cmd, prof, cfg, pf.cfgPath)
			if err != nil {
				return err
			}
			plan, err := export.NewPlan(rules, export.Options{Table: table, Devices: devs, DNSServers: servers, Title: title, Notes: notes})
			if err != nil {
				return err
			}
			return plan.Write(cmd.OutOrStdout(), format)
		},
	}
	pf.add(cmd)
	cmd.Flags().StringVar(&format, "format", "nftables", "output format: "+strings.Join(export.Formats, ", "))
	cmd.Flags().StringVar(&table, "table", export.DefaultTable, "the nftables table's name")
	cmd.Flags().StringSliceVar(&devices, "device", nil, "the devices' addresses: a prefix or an address (repeat, or separate with commas)")
	cmd.Flags().StringSliceVar(&dnsServers, "dns-server", nil, "DNS servers the devices use, if not the gateway itself")
	return cmd
}

// exportRules gives the rules of a profile, or of a config with its apps, a
// title that says which, and notes on what the rules leave out.
func exportRules(cmd *cobra.Command, prof *catalog.Profile, cfg *config.Config, cfgPath string) ([]export.Rule, string, []string, error) {
	if cfg == nil {
		rules, err := export.FromProfile(prof)
		return rules, "pinholed's endpoints, profile " + prof.Name, nil, err
	}
	manifests, warnings, err := policy.LoadManifests(cfg)
	for _, d := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), d)
	}
	if err != nil {
		return nil, "", nil, err
	}
	// The config is for a device, not for this machine: its users need not
	// exist here, and this machine's resolv.conf says nothing about the
	// device's DNS servers.
	uids := map[string]uint32{}
	env := policy.Env{
		LookupUser: func(name string) (uint32, error) {
			if _, ok := uids[name]; !ok {
				uids[name] = uint32(1_000_000 + len(uids))
			}
			return uids[name], nil
		},
		ReadResolvConf: func(string) ([]netip.AddrPort, error) { return nil, nil },
	}
	p, err := policy.CompileWith(cfg, manifests, env)
	if err != nil {
		return nil, "", nil, err
	}
	names := make([]string, 0, len(p.Apps))
	for _, a := range p.Apps {
		names = append(names, a.Name)
	}
	title := fmt.Sprintf("everything %s allows: pinholed (profile %s)", cfgPath, prof.Name)
	if len(names) > 0 {
		title += " and apps " + strings.Join(names, ", ")
	}
	return export.FromPolicy(p, prof, len(cfg.DNS.Upstreams) > 0), title, export.ServerNotes(p), nil
}
