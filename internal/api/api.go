// Package api is pinholed's REST API: the server (on a Unix socket, and later
// on the service link) and the typed client the pinhole CLI uses.
//
// The resources under /net follow Azure Sphere's device REST API (GET
// /net/status, /net/interfaces, /net/firewall/rulesets, GET|POST|DELETE
// /net/proxy) in their JSON shapes, with pinhole's own fields added; /apps,
// /audit, /dns/stats, /config/reload and /metrics are pinhole's. Every
// response carries a REST-API-Version header, and every error is a JSON
// object {"error": HTTP status, "code": "...", "message": "..."}.
package api

import (
	"time"

	"github.com/pinhole-net/pinhole/internal/learned"
)

// Version is the REST-API-Version header of every response. Azure Sphere
// sends a bare semver there; the "pinhole/" prefix lets a client tell that it
// talks to pinholed.
const Version = "pinhole/1"

// VersionHeader is the name of the version header.
const VersionHeader = "REST-API-Version"

// DefaultMaxBody is the largest request body the server reads; larger ones
// get 413.
const DefaultMaxBody = 64 << 10

// Status is GET /net/status: Azure Sphere's three fields, then pinhole's.
type Status struct {
	// DeviceAuthenticationIsReady is always false: pinhole has no device
	// authentication service of its own.
	DeviceAuthenticationIsReady bool `json:"deviceAuthenticationIsReady"`
	// NetworkTimeSync is "complete", "incomplete" or "disabled".
	NetworkTimeSync string `json:"networkTimeSync"`
	// Proxy is "disabled", "enabled", "resolvingProxyName" or "ready".
	Proxy string `json:"proxy"`

	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Uptime is in whole seconds, like Azure Sphere's GET /status.
	Uptime    int64  `json:"uptime"`
	Config    string `json:"config"`
	Mode      string `json:"mode"`
	Unmanaged string `json:"unmanaged"`
	Apps      int    `json:"apps"`
	// PolicyLoaded is when the running policy was compiled.
	PolicyLoaded time.Time `json:"policyLoaded"`
	// LearnedAddresses counts learned (name, address) entries of all apps.
	LearnedAddresses int `json:"learnedAddresses"`
	// LastReload is the outcome of the last reload, if there was one.
	LastReload *ReloadOutcome `json:"lastReload,omitempty"`
	// Problems lists parts that do not work as configured (a DNS stub that
	// could not listen, the audit reader down); empty when all is well.
	Problems []string `json:"problems,omitempty"`
}

// ReloadOutcome is what the last reload did.
type ReloadOutcome struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Error is why it failed; the old policy stayed.
	Error string `json:"error,omitempty"`
}

// Interface is one element of GET /net/interfaces, Azure Sphere's
// NetworkInterfaceDetails.
type Interface struct {
	InterfaceName string `json:"interfaceName"`
	InterfaceUp   bool   `json:"interfaceUp"`
	// ConnectedToNetwork: the link has carrier.
	ConnectedToNetwork bool `json:"connectedToNetwork"`
	// IPAssignment is "static" or "dynamic"; null because pinhole does not
	// manage addresses and cannot tell.
	IPAssignment *string `json:"ipAssignment"`
	// IPAcquired: the interface has an address other than a link-local one.
	IPAcquired  bool     `json:"ipAcquired"`
	IPAddresses []string `json:"ipAddresses"`
	// ConnectedToInternet is false until pinhole runs a connectivity check
	// (not yet implemented).
	ConnectedToInternet bool    `json:"connectedToInternet"`
	HardwareAddress     *string `json:"hardwareAddress"`
}

// Interfaces is GET /net/interfaces.
type Interfaces struct {
	Interfaces []Interface `json:"interfaces"`
}

// Identity is how an app's processes are recognised.
type Identity struct {
	// Kind is "uid", "cgroup" or "mark" (pinholed itself).
	Kind string  `json:"kind"`
	UID  *uint32 `json:"uid,omitempty"`
	User string  `json:"user,omitempty"`
	// Cgroup is relative to the cgroup v2 root; CgroupID is the id the
	// firewall matches now (0 while the cgroup does not exist).
	Cgroup   string `json:"cgroup,omitempty"`
	CgroupID uint64 `json:"cgroupId,omitempty"`
	Mark     uint32 `json:"mark,omitempty"`
}

// Packets counts an app's packets in its firewall chains since the table
// was installed: new connections let out, and packets denied (or, in audit
// mode, that would have been).
type Packets struct {
	Allowed uint64 `json:"allowed"`
	Denied  uint64 `json:"denied"`
}

// AppSummary is one element of GET /apps.
type AppSummary struct {
	Name     string   `json:"name"`
	Identity Identity `json:"identity"`
	Manifest string   `json:"manifest,omitempty"`
	// DNSPort is the app's resolver stub port (0 for pinholed itself).
	DNSPort uint16 `json:"dnsPort,omitempty"`
	// Hosts and Addresses count the host name and address rules.
	Hosts          int      `json:"hosts"`
	Addresses      int      `json:"addresses"`
	TCPServerPorts []uint16 `json:"tcpServerPorts,omitempty"`
	UDPServerPorts []uint16 `json:"udpServerPorts,omitempty"`
	// LearnedNames and LearnedAddresses count what its DNS answers opened;
	// LearnedHosts are those names, sorted.
	LearnedNames     int      `json:"learnedNames"`
	LearnedAddresses int      `json:"learnedAddresses"`
	LearnedHosts     []string `json:"learnedHosts,omitempty"`
	Packets          Packets  `json:"packets"`
}

// Apps is GET /apps.
type Apps struct {
	Apps []AppSummary `json:"apps"`
}

// ManifestInfo is the part of an app's manifest that names it.
type ManifestInfo struct {
	Name            string `json:"name"`
	ComponentID     string `json:"componentId"`
	ApplicationType string `json:"applicationType,omitempty"`
}

// Rule is one thing an app may reach: a host pattern or an address, on
// ports ("tcp/443"; none listed means any port).
type Rule struct {
	Host    string   `json:"host,omitempty"`
	Address string   `json:"address,omitempty"`
	Ports   []string `json:"ports,omitempty"`
	// Source is where the rule comes from (manifest entry or profile).
	Source string `json:"source"`
}

// App is GET /apps/{name}.
type App struct {
	AppSummary
	Component *ManifestInfo `json:"component,omitempty"`
	Rules     []Rule        `json:"rules"`
	// Learned are the names its DNS answers opened, with their addresses
	// and when each closes.
	Learned []learned.NameEntry `json:"learned"`
	// DNSQueries counts its queries by verdict.
	DNSQueries map[string]uint64 `json:"dnsQueries,omitempty"`
}

// ReloadRequest is the optional body of POST /config/reload.
type ReloadRequest struct {
	// DryRun loads and compiles the config and manifests and reports the
	// result without applying anything.
	DryRun bool `json:"dryRun,omitempty"`
}

// ReloadResult is the answer to a successful POST /config/reload.
type ReloadResult struct {
	DryRun bool `json:"dryRun,omitempty"`
	Apps   int  `json:"apps"`
	// Added, Removed and Changed name the apps that differ from the policy
	// that ran before.
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Changed []string `json:"changed,omitempty"`
	// KeptLearned counts learned entries the new policy still allows.
	KeptLearned int `json:"keptLearned"`
	// Warnings are the manifests' warnings.
	Warnings []string `json:"warnings,omitempty"`
	// RestartRequired names settings that changed but take effect only
	// when pinholed restarts.
	RestartRequired []string `json:"restartRequired,omitempty"`
	// DNSUpstreams are the servers the DNS stubs forward to after the
	// reload (empty when there are none, as with an empty resolv.conf; null
	// for a dry run).
	DNSUpstreams []string `json:"dnsUpstreams"`
	// Took is how long the reload took, in milliseconds.
	Took float64 `json:"tookMs"`
}
