// Package lab builds pinhole's lab: a simulated device and its internet, each
// in a network namespace of its own, joined by a veth pair. The internet side
// serves DNS (dnsmasq), HTTP and HTTPS (a small Go server) and MQTT over TLS
// (mosquitto) for the endpoint catalog's host names and the sample apps'
// names; the device side runs pinholed with the sample apps (or a config of
// the user's own) and app identities made by the lab (cgroups, UIDs without
// passwd entries). A supervisor process keeps the services running; Down
// removes everything, also what a crashed run left behind.
//
// The lab never changes the machine's own network namespace: the veth pair
// is created inside the device namespace with its peer in the internet
// namespace, and every address, route and firewall rule lives inside them.
//
// Everything a lab creates is named after its Layout (by default
// "pinhole-lab"): namespaces NAME-device and NAME-internet, the cgroup NAME,
// the state directory /run/NAME. One lab of a name exists at a time.
package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
)

// DefaultName is the name of the lab the CLI builds.
const DefaultName = "pinhole-lab"

// Layout names what a lab creates. Every name derives from Name.
type Layout struct {
	Name string
}

var labName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Validate checks that the name is short, lower case and safe in paths.
func (l Layout) Validate() error {
	if !labName.MatchString(l.Name) {
		return fmt.Errorf("lab name %q: 1 to 31 of a-z, 0-9 and '-', starting with a letter", l.Name)
	}
	return nil
}

// Dir is the state directory: configs, certificates, logs, the API socket.
func (l Layout) Dir() string { return filepath.Join("/run", l.Name) }

// DeviceNetns and InternetNetns are the network namespaces' names.
func (l Layout) DeviceNetns() string   { return l.Name + "-device" }
func (l Layout) InternetNetns() string { return l.Name + "-internet" }

// NetnsPath is where ip(8) keeps a named namespace, for nsenter --net=.
func NetnsPath(name string) string { return "/run/netns/" + name }

// Cgroup is the lab's cgroup (relative to the cgroup2 root); every process
// the lab starts lives below it, so that Down can find them all.
func (l Layout) Cgroup() string { return l.Name }

// ServicesCgroup holds the supervisor and the services.
func (l Layout) ServicesCgroup() string { return l.Name + "/services" }

// AppCgroup holds an app's processes; for cgroup-identified apps it is the
// identity pinholed matches.
func (l Layout) AppCgroup(app string) string { return l.Name + "/apps/" + app }

// ShellCgroup holds processes in the device that belong to no app.
func (l Layout) ShellCgroup() string { return l.Name + "/shell" }

// The lab's fixed addresses. The device sits on a private LAN whose router
// (the internet namespace's end of the veth) leads to a public internet made
// of 198.18.0.0/15 and 2001:db8::/32 addresses: private answers would be
// refused by pinhole's DNS rebinding protection.
var (
	DeviceLANv4  = netip.MustParsePrefix("192.168.1.10/24")
	RouterLANv4  = netip.MustParsePrefix("192.168.1.1/24")
	DeviceLANv6  = netip.MustParsePrefix("fd00:1::10/64")
	RouterLANv6  = netip.MustParsePrefix("fd00:1::1/64")
	LANServer    = netip.MustParseAddr("192.168.1.20") // webfetch's literal address
	ResolverV4   = netip.MustParseAddr("198.18.0.53")
	ResolverV6   = netip.MustParseAddr("2001:db8::53")
	PublicV4     = netip.MustParsePrefix("198.18.0.0/15")
	PublicV6     = netip.MustParsePrefix("2001:db8::/32")
	firstHostV4  = netip.MustParseAddr("198.18.1.0")
	firstHostV6  = netip.MustParseAddr("2001:db8:1::")
	deviceIface  = "eth0"
	routerIface  = "lan0"
	resolverPort = uint16(53)
)

// Ports of the internet's services.
const (
	HTTPPort  = 80
	HTTPSPort = 443
	MQTTPort  = 8883
)

// FirstAppUID is the UID the lab gives its first app; the next apps get the
// following UIDs that have no passwd entry.
const FirstAppUID = 64201
