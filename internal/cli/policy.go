package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/policy"
	"github.com/spf13/cobra"
)

func init() {
	register(newConfigCmd)
	register(newPolicyCmd)
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with pinholed's config file",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Check a config file, its apps' manifests and the policy they compile to",
		Long: `Check a pinholed config file the way pinholed loads it: the YAML (unknown keys
are errors), every app's manifest, and the compiled policy (server ports claimed
twice, identities shared). Prints every problem with its place and exits 1 if
there is any; warnings alone do not fail.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			p, cfg, err := loadPolicy(out, args[0])
			if err != nil {
				fmt.Fprintln(out, err)
				return &ExitError{Code: 1}
			}
			apps := fmt.Sprintf("%d apps", len(p.Apps))
			if len(p.Apps) == 1 {
				apps = "1 app"
			}
			fmt.Fprintf(out, "%s: ok: profile %s, mode %s, unmanaged %s, %s\n",
				args[0], cfg.Profile.Name, p.Mode, p.Unmanaged, apps)
			return nil
		},
	})
	return cmd
}

// loadPolicy loads a config, its manifests and the policy, printing manifest
// warnings to w. The error says what failed and where.
func loadPolicy(w io.Writer, path string) (*policy.Policy, *config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	p, warnings, err := policy.Load(cfg)
	for _, d := range warnings {
		fmt.Fprintln(w, d)
	}
	if err != nil {
		return nil, cfg, err
	}
	return p, cfg, nil
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Show the policy a config compiles to",
	}
	var cfgPath string
	var asJSON bool
	show := &cobra.Command{
		Use:   "show --config FILE [--json]",
		Short: "Show what each app, and pinholed itself, may reach and serve",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			p, _, err := loadPolicy(cmd.ErrOrStderr(), cfgPath)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(policyView(p))
			}
			return printPolicy(out, p)
		},
	}
	show.Flags().StringVarP(&cfgPath, "config", "c", "/etc/pinhole/pinhole.yaml", "pinholed config file")
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(show)
	return cmd
}

type ruleView struct {
	Destination string   `json:"destination"`
	Kind        string   `json:"kind"`
	Ports       []string `json:"ports"`
	Source      string   `json:"source,omitempty"`
}

type identityView struct {
	Name           string     `json:"name"`
	Identity       string     `json:"identity"`
	Manifest       string     `json:"manifest,omitempty"`
	DNSPort        uint16     `json:"dnsStubPort,omitempty"`
	Reach          []ruleView `json:"reach"`
	TCPServerPorts []uint16   `json:"tcpServerPorts"`
	UDPServerPorts []uint16   `json:"udpServerPorts"`
}

type policyJSON struct {
	Mode       string         `json:"mode"`
	Unmanaged  string         `json:"unmanaged"`
	SystemMark string         `json:"systemMark"`
	NFLOGGroup uint16         `json:"nflogGroup"`
	Upstreams  []string       `json:"dnsUpstreams"`
	Identities []identityView `json:"identities"`
}

func portsView(ps policy.Ports) []string {
	if ps.Any() {
		return []string{"any"}
	}
	// "tcp/443 udp/443" reads better as "443"; keep the protocol only when
	// one side is missing.
	var out []string
	seen := map[uint16]int{}
	for _, p := range ps {
		seen[p.Port]++
	}
	done := map[uint16]bool{}
	for _, p := range ps {
		switch {
		case seen[p.Port] > 1 && !done[p.Port]:
			out = append(out, fmt.Sprint(p.Port))
			done[p.Port] = true
		case seen[p.Port] == 1:
			out = append(out, p.String())
		}
	}
	return out
}

func policyView(p *policy.Policy) policyJSON {
	v := policyJSON{
		Mode:       string(p.Mode),
		Unmanaged:  string(p.Unmanaged),
		SystemMark: fmt.Sprintf("%#x", p.SystemMark),
		NFLOGGroup: p.NFLOGGroup,
	}
	for _, u := range p.DNS.Upstreams {
		v.Upstreams = append(v.Upstreams, u.String())
	}
	for _, a := range p.Identities() {
		iv := identityView{
			Name: a.Name, Identity: a.Identity.String(), Manifest: a.ManifestPath, DNSPort: a.DNSPort,
			Reach: []ruleView{}, TCPServerPorts: nonNil(a.TCPServerPorts), UDPServerPorts: nonNil(a.UDPServerPorts),
		}
		for _, h := range a.Hosts {
			iv.Reach = append(iv.Reach, ruleView{Destination: h.Pattern.String(), Kind: h.Pattern.Kind.String(), Ports: portsView(h.Ports), Source: h.Source})
		}
		for _, r := range a.Addrs {
			kind := "ipv4"
			if r.Addr.Is6() {
				kind = "ipv6"
			}
			iv.Reach = append(iv.Reach, ruleView{Destination: r.Addr.String(), Kind: kind, Ports: portsView(r.Ports), Source: r.Source})
		}
		v.Identities = append(v.Identities, iv)
	}
	return v
}

func nonNil(ports []uint16) []uint16 {
	if ports == nil {
		return []uint16{}
	}
	return ports
}

func printPolicy(w io.Writer, p *policy.Policy) error {
	v := policyView(p)
	fmt.Fprintf(w, "mode %s, unmanaged processes: %s, DNS upstreams: %s\n",
		v.Mode, v.Unmanaged, strings.Join(v.Upstreams, ", "))
	for _, iv := range v.Identities {
		fmt.Fprintf(w, "\n%s  (%s", iv.Name, iv.Identity)
		if iv.DNSPort != 0 {
			fmt.Fprintf(w, ", DNS stub port %d", iv.DNSPort)
		}
		fmt.Fprintln(w, ")")
		if iv.Manifest != "" {
			fmt.Fprintf(w, "  manifest: %s\n", iv.Manifest)
		}
		if len(iv.Reach) == 0 {
			fmt.Fprintln(w, "  may reach: nothing")
		} else {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  MAY REACH\tKIND\tPORTS")
			for _, r := range iv.Reach {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Destination, r.Kind, strings.Join(r.Ports, " "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if len(iv.TCPServerPorts)+len(iv.UDPServerPorts) > 0 {
			fmt.Fprintf(w, "  serves: tcp %v udp %v\n", iv.TCPServerPorts, iv.UDPServerPorts)
		}
	}
	return nil
}
