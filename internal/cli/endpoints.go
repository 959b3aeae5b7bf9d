package cli

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/spf13/cobra"
)

func init() { register(newEndpointsCmd) }

// endpointFormats are the output formats of pinhole endpoints.
var endpointFormats = []string{"table", "json", "csv", "markdown"}

// profileFlags choose a catalog profile and its parameters, or a pinholed
// config file that names them.
type profileFlags struct {
	profile, hub, connURL, cfgPath string
	ntp                            []string
}

func (f *profileFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.profile, "profile", config.DefaultProfile, "catalog profile: "+strings.Join(catalog.Names(), ", "))
	cmd.Flags().StringVar(&f.hub, "hub", "", "azure-iot-hub: the IoT hub's name or full host name")
	cmd.Flags().StringSliceVar(&f.ntp, "ntp-server", nil, "azure-iot-hub, minimal: a time server (repeat, or separate with commas)")
	cmd.Flags().StringVar(&f.connURL, "connectivity-url", "", "minimal: the URL of the internet connection check")
	cmd.Flags().StringVar(&f.cfgPath, "config", "", "take the profile from this pinholed config file")
}

// load returns the chosen profile, and the config when --config was given.
func (f *profileFlags) load(cmd *cobra.Command) (*catalog.Profile, *config.Config, error) {
	name, params := f.profile, map[string]string{}
	var cfg *config.Config
	if f.cfgPath != "" {
		for _, fl := range []string{"profile", "hub", "ntp-server", "connectivity-url"} {
			if cmd.Flags().Changed(fl) {
				return nil, nil, fmt.Errorf("--%s and --config cannot be used together: the config names the profile", fl)
			}
		}
		c, err := config.Load(f.cfgPath)
		if err != nil {
			return nil, nil, err
		}
		cfg, name, params = c, c.Profile.Name, c.Profile.Params
	} else {
		if f.hub != "" {
			params["hub"] = f.hub
		}
		if len(f.ntp) > 0 {
			params["ntp_servers"] = strings.Join(f.ntp, ",")
		}
		if f.connURL != "" {
			params["connectivity_url"] = f.connURL
		}
	}
	p, err := catalog.Load(name, params)
	if err != nil {
		var pe *catalog.ParamError
		if errors.As(err, &pe) {
			return nil, nil, fmt.Errorf("--%s: %w", strings.ReplaceAll(flagOf(pe.Param), "_", "-"), pe.Err)
		}
		return nil, nil, err
	}
	return p, cfg, nil
}

func newEndpointsCmd() *cobra.Command {
	var (
		pf     profileFlags
		format string
	)
	cmd := &cobra.Command{
		Use:   "endpoints [--profile P] [--hub NAME] [--ntp-server S]... [--format table|json|csv|markdown]",
		Short: "Print the endpoints a device must reach (for firewall administrators)",
		Long: `Print the endpoint catalog: every protocol, port and host a device's own
software must reach, and why. Profiles:

  azure-sphere   what Azure Sphere OS uses (the default)
  azure-iot-hub  an Azure IoT hub (--hub NAME) and the Device Provisioning Service
  minimal        DNS, NTP (--ntp-server) and an internet connection check
                 (--connectivity-url)

With --config, the profile and its parameters come from a pinholed config
file. "pinhole endpoints profiles" lists the profiles and their parameters;
"pinhole endpoints export" writes the rules for a gateway's firewall.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, _, err := pf.load(cmd)
			if err != nil {
				return err
			}
			return writeEndpoints(cmd.OutOrStdout(), p, format)
		},
	}
	pf.add(cmd)
	cmd.Flags().StringVar(&format, "format", "table", "output format: "+strings.Join(endpointFormats, ", "))
	cmd.AddCommand(newEndpointsProfilesCmd(), newEndpointsExportCmd())
	return cmd
}

// flagOf names the command-line flag of a catalog parameter.
func flagOf(param string) string {
	switch param {
	case "ntp_servers":
		return "ntp-server"
	case "connectivity_url":
		return "connectivity-url"
	}
	return param
}

func newEndpointsProfilesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "profiles",
		Short: "List the catalog's profiles and their parameters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			for i, name := range catalog.Names() {
				ps, err := catalog.Params(name)
				if err != nil {
					return err
				}
				p, err := catalog.Load(name, placeholderParams(ps))
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "%s\n  %s\n", name, p.Description)
				for _, pr := range ps {
					note := ""
					switch {
					case pr.Required:
						note = " (required)"
					case pr.Default != "":
						note = " (default " + pr.Default + ")"
					}
					fmt.Fprintf(out, "  --%s: %s%s\n", flagOf(pr.Name), pr.Description, note)
				}
			}
			return nil
		},
	}
}

// placeholderParams fills required parameters so a profile can be loaded
// for its description.
func placeholderParams(ps []catalog.Param) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		if p.Required {
			m[p.Name] = "example-hub"
		}
	}
	return m
}

func writeEndpoints(w io.Writer, p *catalog.Profile, format string) error {
	var err error
	switch format {
	case "table":
		err = writeEndpointsTable(w, p)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(p)
	case "csv":
		err = writeEndpointsCSV(w, p)
	case "markdown":
		err = writeEndpointsMarkdown(w, p)
	default:
		return fmt.Errorf("--format %q: choose one of %s", format, strings.Join(endpointFormats, ", "))
	}
	if err != nil {
		return fmt.Errorf("write endpoints: %w", err)
	}
	return nil
}

// dnsServers is what the catalog's DNS rows show for their destinations.
const dnsServers = "(the configured DNS servers)"

func destinations(e catalog.Endpoint) []string {
	if e.Kind == catalog.KindDNSServers {
		return []string{dnsServers}
	}
	return e.Destinations()
}

func portText(e catalog.Endpoint) string {
	s := strconv.Itoa(int(e.Port))
	if e.PortNote != "" {
		s += " (" + e.PortNote + ")"
	}
	return s
}

func purposeText(e catalog.Endpoint) string {
	if e.Optional {
		return e.Purpose + " (optional)"
	}
	return e.Purpose
}

// writeEndpointsTable prints one line per destination, the endpoint's other
// columns on its first line only.
func writeEndpointsTable(w io.Writer, p *catalog.Profile) error {
	fmt.Fprintf(w, "Profile %s: %s\n\n", p.Name, p.Description)
	var buf strings.Builder
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTOCOL\tTRANSPORT\tPORT\tHOST\tPURPOSE")
	for _, e := range p.Endpoints {
		for i, d := range destinations(e) {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Protocol, e.Transport, portText(e), d, purposeText(e))
			} else {
				fmt.Fprintf(tw, "\t\t\t%s\t\n", d)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Continuation lines end in padding; drop it.
	for line := range strings.Lines(buf.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
	_, err := fmt.Fprintf(w, "\nSource: %s\n", p.Source)
	return err
}

// writeEndpointsCSV writes one row per destination, for spreadsheets and
// scripts.
func writeEndpointsCSV(w io.Writer, p *catalog.Profile) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"profile", "protocol", "transport", "port", "port_note", "kind", "destination", "purpose", "optional"})
	for _, e := range p.Endpoints {
		dests := e.Destinations()
		if e.Kind == catalog.KindDNSServers {
			dests = []string{""}
		}
		for _, d := range dests {
			_ = cw.Write([]string{p.Name, e.Protocol, string(e.Transport), strconv.Itoa(int(e.Port)), e.PortNote,
				string(e.Kind), d, e.Purpose, strconv.FormatBool(e.Optional)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeEndpointsMarkdown writes the table as SPEC.md shows it, one row per
// endpoint.
func writeEndpointsMarkdown(w io.Writer, p *catalog.Profile) error {
	esc := strings.NewReplacer("|", `\|`, "\n", " ")
	var b strings.Builder
	b.WriteString("| protocol | transport | port | hosts | purpose |\n|---|---|---|---|---|\n")
	for _, e := range p.Endpoints {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", esc.Replace(e.Protocol), e.Transport, esc.Replace(portText(e)),
			esc.Replace(strings.Join(destinations(e), ", ")), esc.Replace(purposeText(e)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
