package lab

import (
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// Service is one long-running program of the lab, run and restarted by the
// supervisor.
type Service struct {
	Name string `json:"name"`
	// Netns is the namespace it runs in (a name in /run/netns).
	Netns string   `json:"netns"`
	Argv  []string `json:"argv"`
	// Ready lists what must answer before the service counts as started.
	Ready []Check `json:"ready"`
	// Offers says what the service gives, in a status line.
	Offers string `json:"offers"`
}

// Check is a readiness probe: a connection that must succeed.
type Check struct {
	// Network is "tcp" (dialled inside Netns) or "unix".
	Network string `json:"network"`
	Netns   string `json:"netns,omitempty"`
	Addr    string `json:"addr"`
}

// A module adds one service to the lab: its programs, its files and how to
// run it. NTP (chrony), an HTTP proxy (tinyproxy) or the serial service link
// are further modules: each writes its config into the plan's files, adds a
// Service and, if it needs them, names in the zone or keys in the device
// config.
type module interface {
	name() string
	tools() []Tool
	service(p *Plan, files map[string][]byte) (Service, error)
}

// modules run in this order; pinholed comes last, once its internet is up.
var modules = []module{dnsModule{}, webModule{}, mqttModule{}, pinholedModule{}}

type dnsModule struct{}

func (dnsModule) name() string { return "dns" }
func (dnsModule) tools() []Tool {
	return []Tool{{Binary: "dnsmasq", Package: "dnsmasq-base", Why: "the lab internet's DNS server"}}
}

func (dnsModule) service(p *Plan, files map[string][]byte) (Service, error) {
	bin, err := FindTool("dnsmasq")
	if err != nil {
		return Service{}, err
	}
	files["dnsmasq.conf"] = []byte(RenderDnsmasq(p.Zone))
	return Service{
		Name:  "dns",
		Netns: p.InternetNetns,
		Argv:  []string{bin, "--keep-in-foreground", "--conf-file=" + filepath.Join(p.Dir, "dnsmasq.conf"), "--pid-file="},
		Ready: []Check{
			{Network: "tcp", Netns: p.InternetNetns, Addr: netip.AddrPortFrom(ResolverV4, resolverPort).String()},
			{Network: "tcp", Netns: p.InternetNetns, Addr: netip.AddrPortFrom(ResolverV6, resolverPort).String()},
		},
		Offers: fmt.Sprintf("DNS on %s and %s port 53 (dnsmasq): %d names with A, AAAA and CNAME chains; NXDOMAIN for every other name",
			ResolverV4, ResolverV6, len(p.Zone)),
	}, nil
}

type webModule struct{}

func (webModule) name() string  { return "web" }
func (webModule) tools() []Tool { return nil }

func (webModule) service(p *Plan, _ map[string][]byte) (Service, error) {
	return Service{
		Name:  "web",
		Netns: p.InternetNetns,
		Argv:  append(append([]string{}, p.Helper...), "web", "--dir", p.Dir),
		// Both ports listen before either serves; a check of the TLS port
		// would only leave handshake errors in the log.
		Ready:  []Check{{Network: "tcp", Netns: p.InternetNetns, Addr: "127.0.0.1:" + strconv.Itoa(HTTPPort)}},
		Offers: fmt.Sprintf("HTTP on port %d and HTTPS on %d at every address (certificates of the lab CA)", HTTPPort, HTTPSPort),
	}, nil
}

type mqttModule struct{}

func (mqttModule) name() string { return "mqtt" }
func (mqttModule) tools() []Tool {
	return []Tool{{Binary: "mosquitto", Package: "mosquitto", Why: "the lab internet's MQTT broker (IoT hub)"}}
}

func (mqttModule) service(p *Plan, files map[string][]byte) (Service, error) {
	bin, err := FindTool("mosquitto")
	if err != nil {
		return Service{}, err
	}
	// mosquitto opens its key after it dropped root for its own user; let
	// that user's group read it, or stay root where there is no such user.
	runAs := "root"
	if g, err := user.LookupGroup("mosquitto"); err == nil {
		gid, err := strconv.Atoi(g.Gid)
		if err == nil {
			err = os.Chown(p.ServerKey, 0, gid)
		}
		if err == nil {
			err = os.Chmod(p.ServerKey, 0o640)
		}
		if err != nil {
			return Service{}, fmt.Errorf("let mosquitto read the lab's key: %w", err)
		}
		runAs = "mosquitto"
	}
	files["mosquitto.conf"] = []byte(RenderMosquitto(p.CACert, p.ServerCert, p.ServerKey, runAs))
	return Service{
		Name:   "mqtt",
		Netns:  p.InternetNetns,
		Argv:   []string{bin, "-c", filepath.Join(p.Dir, "mosquitto.conf")},
		Ready:  []Check{{Network: "tcp", Netns: p.InternetNetns, Addr: "127.0.0.1:" + strconv.Itoa(MQTTPort)}},
		Offers: fmt.Sprintf("MQTT over TLS on port %d at every address (mosquitto)", MQTTPort),
	}, nil
}

type pinholedModule struct{}

func (pinholedModule) name() string  { return "pinholed" }
func (pinholedModule) tools() []Tool { return nil }

func (pinholedModule) service(p *Plan, _ map[string][]byte) (Service, error) {
	return Service{
		Name:   "pinholed",
		Netns:  p.DeviceNetns,
		Argv:   []string{p.Pinholed, "--config", p.Config},
		Ready:  []Check{{Network: "unix", Addr: p.APISocket}},
		Offers: "pinhole's daemon: firewall, per-app DNS, audit; API on " + p.APISocket,
	}, nil
}
