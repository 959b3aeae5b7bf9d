package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/lab"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func init() { register(newLabCmd) }

// labFlags are shared by the lab's subcommands.
type labFlags struct {
	name string
}

func (f *labFlags) layout() lab.Layout { return lab.Layout{Name: f.name} }

func newLabCmd() *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A simulated device and its internet in network namespaces, to see pinhole work",
		Long: `The lab builds a device and an internet, each in a network namespace of its own,
joined by a veth pair; the machine's own network is never touched. The internet
serves DNS (with the endpoint catalog's host names, the sample apps' names and
CNAME chains), HTTP, HTTPS and MQTT over TLS; the device runs pinholed with the
sample apps of examples/ (or a config of your own) and their identities.

  pinhole lab demo       brings the lab up, shows what each sample app may and
                         may not do and why, then removes the lab again
  pinhole lab up         brings the lab up and leaves it running
  pinhole lab shell      a shell in the device, as root or as an app
  pinhole lab exec       one command in the device as an app
  pinhole lab status     what runs, addresses and services
  pinhole lab down       removes everything the lab made

The lab needs root, and the Debian packages iproute2, util-linux, dnsmasq-base
and mosquitto (curl, bind9-dnsutils and mosquitto-clients for trying things by
hand). pinholed is looked for next to the pinhole binary, then on PATH.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&f.name, "lab-name", lab.DefaultName, "the lab's name (tests run labs of their own)")
	_ = cmd.PersistentFlags().MarkHidden("lab-name")
	cmd.AddCommand(newLabUpCmd(f), newLabDownCmd(f), newLabStatusCmd(f), newLabShellCmd(f),
		newLabExecCmd(f), newLabDemoCmd(f), newLabHelperCmd())
	return cmd
}

// selfPath is the running pinhole binary.
func selfPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the pinhole binary: %w", err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return exe, nil
}

// findPinholed picks the pinholed binary: the flag, the one next to this
// pinhole binary, or the one on PATH.
func findPinholed(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if self, err := selfPath(); err == nil {
		p := filepath.Join(filepath.Dir(self), "pinholed")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pinholed"); err == nil {
		return p, nil
	}
	return "", errors.New("pinholed not found next to pinhole nor on PATH: build both with\n" +
		"  go build -o bin/ ./cmd/pinhole ./cmd/pinholed\nor give --pinholed PATH")
}

func labOptions(f *labFlags, configFile, pinholed string, progress io.Writer) (lab.Options, error) {
	self, err := selfPath()
	if err != nil {
		return lab.Options{}, err
	}
	pd, err := findPinholed(pinholed)
	if err != nil {
		return lab.Options{}, err
	}
	return lab.Options{
		Layout:   f.layout(),
		Config:   configFile,
		Pinholed: pd,
		Helper:   []string{self, "lab", "_helper"},
		Progress: progress,
	}, nil
}

func newLabUpCmd(f *labFlags) *cobra.Command {
	var configFile, pinholed string
	cmd := &cobra.Command{
		Use:   "up [--config FILE] [--pinholed PATH]",
		Short: "Bring the lab up and leave it running",
		Long: `Bring the lab up: namespaces, network, the internet's services and pinholed in
the device, supervised until pinhole lab down.

--config runs a pinholed config of your own (with your own apps and manifests)
instead of the sample one, to try your manifests against the simulated
internet before you ship them. The lab serves every host name your manifests
list. It changes a few keys of a copy of your config (it prints which): the DNS
upstream, paths, the apps' identities, and it turns time sync off, because the
clock is not namespaced and the lab must never set this machine's clock.`,
		Example: `  pinhole lab up
  pinhole lab up --config ./my-device.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			opts, err := labOptions(f, configFile, pinholed, out)
			if err != nil {
				return err
			}
			p, err := lab.Up(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if configFile != "" {
				fmt.Fprintf(out, "the lab runs a copy of your config (%s) with these changes:\n", p.Config)
				for _, c := range lab.DeviceConfigChanges {
					fmt.Fprintln(out, "  "+c)
				}
			}
			fmt.Fprintln(out)
			st, err := lab.ReadStatus(p.Layout())
			if err != nil {
				return err
			}
			st.Print(out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "a pinholed config of your own (default: the sample config and apps)")
	cmd.Flags().StringVar(&pinholed, "pinholed", "", "the pinholed binary (default: next to pinhole, then PATH)")
	return cmd
}

func newLabDownCmd(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove the lab: processes, namespaces, veth pair, cgroups, state",
		Long: `Remove everything the lab made: it stops pinholed and the services, kills any
process left in the lab's cgroup or namespaces, deletes both namespaces (the
veth pair goes with them), the lab's cgroups and its state directory. It also
cleans up after a crash or a half-built lab, and does nothing when there is no
lab.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), time.Minute)
			defer cancel()
			rm, err := lab.Down(ctx, f.layout(), nil)
			printRemoved(cmd.OutOrStdout(), f.name, rm)
			return err
		},
	}
}

func printRemoved(w io.Writer, name string, rm lab.Removed) {
	if rm.Nothing() {
		fmt.Fprintf(w, "no lab %q: nothing to remove\n", name)
		return
	}
	var parts []string
	if rm.Processes > 0 {
		parts = append(parts, fmt.Sprintf("%d processes", rm.Processes))
	}
	if len(rm.Namespaces) > 0 {
		parts = append(parts, "namespaces "+strings.Join(rm.Namespaces, " and ")+" (with the veth pair)")
	}
	if rm.Cgroup != "" {
		parts = append(parts, "cgroup "+rm.Cgroup)
	}
	if rm.Dir != "" {
		parts = append(parts, rm.Dir)
	}
	fmt.Fprintf(w, "lab %q removed: %s\n", name, strings.Join(parts, ", "))
}

func newLabStatusCmd(f *labFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the lab: namespaces, addresses, services, apps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.ReadStatus(f.layout())
			if err != nil {
				if left := lab.Leftovers(f.layout()); len(left) > 0 {
					return fmt.Errorf("%w\nleft behind by an earlier lab: %s (pinhole lab down removes them)", err, strings.Join(left, ", "))
				}
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			st.Print(cmd.OutOrStdout())
			if len(st.Problems) > 0 {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newLabShellCmd(f *labFlags) *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:   "shell [--app NAME]",
		Short: "An interactive shell in the lab's device, as root or as an app",
		Long: `Start an interactive shell inside the lab's device namespace. With --app it runs
as that app (its cgroup and UID), so pinhole treats everything you start there
as the app's; without, it runs as root outside every app, which pinhole treats
as unmanaged (denied by the sample config). curl trusts the lab CA there
($CURL_CA_BUNDLE); mosquitto_pub needs --cafile $SSL_CERT_FILE.`,
		Example: `  pinhole lab shell --app webfetch
    curl https://api.contoso.example/       allowed
    curl https://status.contoso.example/    NXDOMAIN: not in webfetch's manifest`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := lab.LoadPlan(f.layout())
			if err != nil {
				return err
			}
			shell := os.Getenv("SHELL")
			if shell == "" || !filepath.IsAbs(shell) {
				shell = "/bin/bash"
			}
			who := "root, outside every app (unmanaged)"
			if app != "" {
				a, ok := p.App(app)
				if !ok {
					return fmt.Errorf("the lab has no app %q (its apps: %s)", app, strings.Join(p.AppNames(), ", "))
				}
				who = "app " + app + ": " + a.Identity()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "lab %s device, as %s; exit to leave\n", p.Name, who)
			argv := []string{shell, "-i"}
			if filepath.Base(shell) == "bash" {
				argv = []string{shell, "--rcfile", filepath.Join(p.Dir, "bashrc"), "-i"}
			}
			c, release, err := p.Command(app, argv)
			if err != nil {
				return err
			}
			prompt := "[lab " + p.Name + " device, root] \\w \\$ "
			if app != "" {
				prompt = "[lab " + p.Name + " device, " + app + "] \\w \\$ "
			}
			c.Env = append(c.Env, "PS1="+prompt, "PINHOLE_LAB_PS1="+prompt)
			return runAttached(c, release)
		},
	}
	cmd.Flags().StringVar(&app, "app", "", "run the shell as this app of the lab")
	return cmd
}

func newLabExecCmd(f *labFlags) *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:   "exec [--app NAME] -- CMD [ARGS...]",
		Short: "Run a command in the lab's device as one of its apps",
		Long: `Run CMD inside the lab's device namespace as the app NAME (its cgroup and UID),
so that pinhole treats its connections as that app's, and exit with its exit
code. Without --app it runs as root outside every app (unmanaged).`,
		Example: `  pinhole lab exec --app webfetch -- curl -sS https://img.contoso-cdn.example/
  pinhole lab exec --app telemetry -- mosquitto_pub --cafile /run/pinhole-lab/ca.crt \
      -h contoso-hub.azure-devices.net -p 8883 -t devices/d1/messages/events/ -m hello`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := lab.LoadPlan(f.layout())
			if err != nil {
				return err
			}
			c, release, err := p.Command(app, args)
			if err != nil {
				return err
			}
			return runAttached(c, release)
		},
	}
	cmd.Flags().StringVar(&app, "app", "", "run as this app of the lab")
	return cmd
}

// runAttached runs c on this terminal and passes its exit code on. Ctrl-C
// goes to the command (it shares the terminal), not to pinhole.
func runAttached(c *exec.Cmd, release func()) error {
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := c.Start()
	release()
	if err != nil {
		return err
	}
	err = c.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			code = 128 + 9
		}
		return &ExitError{Code: code}
	}
	return err
}

func newLabHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "_helper ROLE [ARGS...]",
		Short:              "Run one of the lab's helper processes (internal)",
		Hidden:             true,
		Args:               cobra.MinimumNArgs(1),
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return lab.RunHelper(cmd.Context(), args[0], args[1:], os.Stdin, os.Stdout, os.Stderr)
		},
	}
}

func newLabDemoCmd(f *labFlags) *cobra.Command {
	var pinholed string
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo [--pinholed PATH] [--keep]",
		Short: "Bring the lab up, show what each sample app may and may not do, remove the lab",
		Long: `Bring the lab up with the sample apps, let each of them try things, and print for
every attempt whether pinhole allowed or denied it and why; then pinhole status,
pinhole firewall rules and pinhole audit from the lab's pinholed; then remove
the lab (also on Ctrl-C). The exit status is 1 if any attempt came out
differently from what the policy says, so the demo doubles as an end-to-end
check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd, f, pinholed, keep)
		},
	}
	cmd.Flags().StringVar(&pinholed, "pinholed", "", "the pinholed binary (default: next to pinhole, then PATH)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the lab up afterwards (remove it with pinhole lab down)")
	return cmd
}

func runDemo(cmd *cobra.Command, f *labFlags, pinholed string, keep bool) (err error) {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	if os.Geteuid() != 0 {
		return lab.ErrNotRoot
	}
	if left := lab.Leftovers(f.layout()); len(left) > 0 {
		return fmt.Errorf("a lab named %q is already up or half-built (%s); the demo brings up a lab of its own and removes it at the end: remove that one first with pinhole lab down",
			f.name, strings.Join(left, ", "))
	}
	opts, err := labOptions(f, "", pinholed, out)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "== bringing the lab up (a device and its internet in network namespaces; this machine's own network is not touched)")
	p, err := lab.Up(ctx, opts)
	upOK := err == nil
	// Clean up whatever happens, Ctrl-C included; the context of the
	// command may be cancelled already.
	defer func() {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "\n== interrupted")
			err = &ExitError{Code: 130}
		} else if keep && upOK {
			fmt.Fprintf(out, "\nthe lab stays up (--keep): pinhole lab status, pinhole lab shell --app NAME, pinhole lab down\n")
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		fmt.Fprintln(out, "\n== removing the lab")
		rm, derr := lab.Down(dctx, f.layout(), nil)
		printRemoved(out, f.name, rm)
		if left := lab.Leftovers(f.layout()); derr != nil || len(left) > 0 {
			// Said here: an ExitError in err would hide it.
			fmt.Fprintf(out, "removing the lab failed: %v; left behind: %s (run pinhole lab down)\n", derr, strings.Join(left, ", "))
			if err == nil {
				err = &ExitError{Code: 1}
			}
		}
	}()
	if err != nil {
		return err
	}
	cfg, err := config.Load(p.Config)
	if err != nil {
		return err
	}
	pol, _, err := policy.Load(cfg)
	if err != nil {
		return err
	}
	attempts, err := lab.SampleAttempts(p, pol)
	if err != nil {
		return err
	}
	client := api.NewUnixClient(p.APISocket)
	runner := &lab.DemoRunner{
		Plan:   p,
		Policy: pol,
		Out:    out,
		Audit: func(ctx context.Context, identity string, since time.Time) ([]audit.Record, error) {
			return client.Audit(ctx, api.AuditQuery{App: identity, Since: since})
		},
	}
	fmt.Fprintf(out, "\n== the apps try things; pinholed decides. Every DNS query of an app goes to the app's own\n"+
		"   pinhole stub, which answers only names the app's manifest lists and asks the lab's DNS server %s.\n", lab.ResolverV4)
	outcomes, err := runner.Run(ctx, attempts)
	if err != nil {
		return err
	}
	for _, args := range [][]string{
		{"status", "--socket", p.APISocket},
		{"firewall", "rules", "--socket", p.APISocket},
		{"audit", "--socket", p.APISocket},
	} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(out, "\n== pinhole %s\n", strings.Join(args, " "))
		runSibling(ctx, out, args)
	}
	bad := 0
	for _, o := range outcomes {
		if !o.Match() {
			bad++
		}
	}
	fmt.Fprintln(out)
	if bad > 0 {
		fmt.Fprintf(out, "== %d of %d attempts did not come out as the policy says (marked !! above)\n", bad, len(outcomes))
		return &ExitError{Code: 1}
	}
	fmt.Fprintf(out, "== all %d attempts came out as the policy says\n", len(outcomes))
	if !keep {
		fmt.Fprintln(out, "   to try things yourself: pinhole lab up, then pinhole lab shell --app webfetch (curl, dig, mosquitto_pub)")
	}
	return nil
}

// runSibling runs another pinhole command in this process, printing its
// output (or why it failed) to out.
func runSibling(ctx context.Context, out io.Writer, args []string) {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(out)
	if err := root.ExecuteContext(ctx); err != nil {
		var ee *ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintf(out, "(pinhole %s: %v)\n", args[0], err)
		}
	}
}
