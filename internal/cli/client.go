package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/config"
)

// defaultConfigPath is where pinholed's config usually is; the CLI reads
// the API socket's path from it.
const defaultConfigPath = "/etc/pinhole/pinhole.yaml"

// clientFlags are the flags of every command that talks to pinholed.
type clientFlags struct {
	socket string
	device string
	json   bool
}

// addClientFlags adds --socket, --device and --json to cmd.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	f := &clientFlags{}
	cmd.Flags().StringVar(&f.socket, "socket", "", "pinholed's API socket (default: $PINHOLE_SOCKET, the api.socket of "+defaultConfigPath+", or "+config.DefaultAPISocket+")")
	cmd.Flags().StringVar(&f.device, "device", "", "talk to a device over the service link instead, at `ADDRESS`[:PORT] (port 80), such as 192.168.35.2")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the API's JSON instead of a table")
	cmd.MarkFlagsMutuallyExclusive("socket", "device")
	return f
}

// client returns the API client the flags select.
func (f *clientFlags) client() *api.Client {
	if f.device != "" {
		addr := f.device
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, "80")
		}
		return api.NewTCPClient(addr)
	}
	return api.NewUnixClient(socketPath(f.socket))
}

// socketPath picks the API socket: the flag, $PINHOLE_SOCKET, the default
// config's api.socket, or the built-in default.
func socketPath(flag string) string {
	if flag != "" {
		return flag
	}
	if s := os.Getenv("PINHOLE_SOCKET"); s != "" {
		return s
	}
	if cfg, err := config.Load(defaultConfigPath); err == nil && cfg.API.Socket != "" {
		return cfg.API.Socket
	}
	return config.DefaultAPISocket
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// when prints a time for people: the clock time today, the date otherwise,
// in local time.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	t = t.Local()
	n := now.Local()
	if t.Year() == n.Year() && t.YearDay() == n.YearDay() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// ago prints how long ago or ahead t is, roughly: "3m ago", "in 42s".
func ago(t, now time.Time) string {
	d := t.Sub(now)
	if d < 0 {
		return roughDuration(-d) + " ago"
	}
	return "in " + roughDuration(d)
}

// roughDuration prints d in its two largest units.
func roughDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// orDash prints "-" for an empty string.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listOr joins items, or says none.
func listOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	return strings.Join(items, ", ")
}

// identityText prints an app's identity for people.
func identityText(id api.Identity) string {
	switch id.Kind {
	case "uid":
		s := "uid "
		if id.UID != nil {
			s += fmt.Sprint(*id.UID)
		}
		if id.User != "" {
			s += " (" + id.User + ")"
		}
		return s
	case "cgroup":
		s := "cgroup " + id.Cgroup
		if id.CgroupID == 0 {
			s += " (absent)"
		}
		return s
	case "mark":
		return fmt.Sprintf("socket mark %#x", id.Mark)
	}
	return id.Kind
}
