package lab

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Tool is a program the lab runs and the Debian package that has it.
type Tool struct {
	Binary  string
	Package string
	Why     string
	// Optional tools are for people trying the lab by hand (lab shell);
	// the lab and its demo work without them.
	Optional bool
}

// Tools lists what the lab needs: the core, each module's programs, then
// the clients people use inside the lab.
func Tools() []Tool {
	out := []Tool{
		{Binary: "ip", Package: "iproute2", Why: "creates the namespaces and the veth pair"},
		{Binary: "nsenter", Package: "util-linux", Why: "starts programs inside the namespaces"},
	}
	for _, m := range modules {
		out = append(out, m.tools()...)
	}
	return append(out,
		Tool{Binary: "curl", Package: "curl", Why: "HTTP and HTTPS by hand in lab shell", Optional: true},
		Tool{Binary: "dig", Package: "bind9-dnsutils", Why: "DNS by hand in lab shell", Optional: true},
		Tool{Binary: "mosquitto_pub", Package: "mosquitto-clients", Why: "MQTT by hand in lab shell", Optional: true},
	)
}

// sbinDirs are searched after PATH: root's PATH may lack them (su without
// a login shell), and dnsmasq and ip live there.
var sbinDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// FindTool returns the path of a program: from PATH, else from the usual
// system directories.
func FindTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if _, err := exec.LookPath(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(name + ": not found")
}

// Missing splits the tools that find cannot locate into required and
// optional ones.
func Missing(tools []Tool, find func(string) (string, error)) (required, optional []Tool) {
	for _, t := range tools {
		if _, err := find(t.Binary); err == nil {
			continue
		}
		if t.Optional {
			optional = append(optional, t)
		} else {
			required = append(required, t)
		}
	}
	return required, optional
}

// AptLine is the command that installs the tools' packages on Debian.
func AptLine(tools []Tool) string {
	var pkgs []string
	for _, t := range tools {
		if !slices.Contains(pkgs, t.Package) {
			pkgs = append(pkgs, t.Package)
		}
	}
	return "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y " + strings.Join(pkgs, " ")
}

// MissingError says which programs the lab lacks and how to install them.
type MissingError struct {
	Tools []Tool
}

func (e *MissingError) Error() string {
	var b strings.Builder
	b.WriteString("the lab needs programs this machine does not have:\n")
	for _, t := range e.Tools {
		b.WriteString("  " + t.Binary + " (Debian package " + t.Package + "): " + t.Why + "\n")
	}
	b.WriteString("install them with:\n  " + AptLine(e.Tools))
	return b.String()
}
