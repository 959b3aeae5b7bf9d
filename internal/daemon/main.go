package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/buildinfo"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/netns"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

const usage = `Usage: pinholed [--config FILE] [--allow-host-netns]
       pinholed --uninstall [--config FILE]
       pinholed --version

pinholed enforces per-app default-deny networking: it installs pinhole's
nftables table, runs a DNS stub per app that opens exactly the hosts the app's
manifest allows, records denials, and serves the REST API that the pinhole
command talks to. SIGHUP reloads the config and the manifests; SIGTERM stops
pinholed and leaves the firewall table in place, so nothing opens while it is
down. --uninstall removes the table.

Flags:
`

// hostNetnsRefusal explains why pinholed will not start in the machine's
// own network namespace without being told to.
const hostNetnsRefusal = `pinholed: refusing to start in this machine's own network namespace.

pinholed installs a default-deny firewall: once it runs, every connection of
every process that is not one of the apps in %s, or allowed
for pinholed itself, is blocked - including SSH sessions, package managers and
the tools you are using now.

On the device that is the point: start it with --allow-host-netns, as the
systemd unit deploy/pinholed.service does. To try pinholed on a workstation,
run it inside a network namespace instead:
    unshare --net pinholed --config FILE
`

// isInitialNetns is netns.IsInitial; tests replace it.
var isInitialNetns = netns.IsInitial

// Main is pinholed's command line: it parses args (without the program
// name), runs the daemon until SIGTERM or SIGINT and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pinholed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		cfgPath   = fs.String("config", DefaultConfig, "the config `file`")
		version   = fs.Bool("version", false, "print the version and exit")
		uninstall = fs.Bool("uninstall", false, "remove pinhole's firewall table and exit (traffic is then no longer filtered)")
		hostNetns bool
	)
	fs.BoolVar(&hostNetns, "allow-host-netns", false, "run in the machine's own network namespace (on the device: yes)")
	fs.BoolVar(&hostNetns, "i-mean-this-host", false, "the same as --allow-host-netns")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pinholed: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	if *version {
		fmt.Fprintln(stdout, "pinholed", buildinfo.String())
		return ExitOK
	}
	if *uninstall {
		return runUninstall(*cfgPath, stdout, stderr)
	}
	if !hostNetns {
		initial, err := isInitialNetns()
		if err != nil {
			fmt.Fprintf(stderr, "pinholed: cannot tell which network namespace this is: %v\n", err)
			return ExitError
		}
		if initial {
			fmt.Fprintf(stderr, hostNetnsRefusal, *cfgPath)
			return ExitUsage
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err := Run(ctx, Options{ConfigPath: *cfgPath, AllowInitialNetns: hostNetns, Reload: hup, Log: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "pinholed: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// runUninstall removes the firewall table, unless pinholed still runs.
func runUninstall(cfgPath string, stdout, stderr io.Writer) int {
	socket := config.DefaultAPISocket
	if cfg, err := config.Load(cfgPath); err == nil {
		socket = cfg.API.Socket
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := api.NewUnixClient(socket).Status(ctx); err == nil {
		fmt.Fprintf(stderr, "pinholed: pinholed is running (its API answers at %s); stop it first, or it would keep working without its table\n", socket)
		return ExitError
	}
	// Removing the table only opens, so the host namespace is allowed.
	fw, err := firewall.New(firewall.Options{AllowInitialNetns: true})
	if err != nil {
		fmt.Fprintf(stderr, "pinholed: uninstall: %v\n", err)
		return ExitError
	}
	defer fw.Close()
	if err := fw.Remove(); err != nil {
		fmt.Fprintf(stderr, "pinholed: uninstall: %v\n", err)
		return ExitError
	}
	fmt.Fprintf(stdout, "removed the nftables table inet %s: traffic is no longer filtered by pinhole\n", firewall.TableName)
	return ExitOK
}
