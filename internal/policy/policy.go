// Package policy compiles pinholed's config and the apps' manifests into one
// immutable Policy: who each app is, what it may reach and serve, and what
// pinholed itself may reach.
package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pinhole-net/pinhole/internal/hostname"
)

// Reserved identity names. No app may use them.
const (
	SystemName    = "system"
	UnmanagedName = "unmanaged"
)

// DefaultSystemMark is the socket mark pinholed puts on its own sockets so
// that the firewall can tell its traffic from everyone else's ("ph" in ASCII).
const DefaultSystemMark uint32 = 0x70680000

// Mode says whether denials are enforced or only logged.
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeAudit   Mode = "audit"
)

// Unmanaged says what happens to traffic of processes that belong to no app.
type Unmanaged string

const (
	UnmanagedDeny  Unmanaged = "deny"
	UnmanagedAllow Unmanaged = "allow"
)

// Proto is an IP protocol number.
type Proto uint8

const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case 0:
		return "any"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// PortSpec is one destination port of one protocol.
type PortSpec struct {
	Proto Proto
	Port  uint16
}

func (p PortSpec) String() string { return fmt.Sprintf("%s/%d", p.Proto, p.Port) }

// Ports lists the destinations a rule allows. A nil Ports allows every port
// and protocol; an empty non-nil Ports allows nothing.
type Ports []PortSpec

// Any reports whether ps allows every port.
func (ps Ports) Any() bool { return ps == nil }

// Union merges two port lists; any port wins.
func (ps Ports) Union(other Ports) Ports {
	if ps == nil || other == nil {
		return nil
	}
	out := slices.Clone(ps)
	for _, p := range other {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b PortSpec) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Proto) - int(b.Proto)
	})
	return out
}

// BothProtocols gives the Ports for a manifest "host:port" entry, which opens
// the port over TCP and UDP (QUIC and DTLS use UDP).
func BothProtocols(port uint16) Ports {
	return Ports{{Proto: TCP, Port: port}, {Proto: UDP, Port: port}}
}

// IdentityKind tells how an identity's processes are recognised.
type IdentityKind uint8

const (
	// ByUID matches sockets created by processes with a user ID.
	ByUID IdentityKind = iota + 1
	// ByCgroup matches sockets created inside a cgroup v2 directory or its
	// descendants.
	ByCgroup
	// ByMark matches sockets carrying a socket mark; only pinholed uses it.
	ByMark
)

func (k IdentityKind) String() string {
	switch k {
	case ByUID:
		return "uid"
	case ByCgroup:
		return "cgroup"
	case ByMark:
		return "mark"
	}
	return fmt.Sprintf("identity(%d)", uint8(k))
}

// Identity says which processes belong to an app.
type Identity struct {
	Kind IdentityKind
	UID  uint32 // ByUID
	// User is the user name the UID was resolved from, if the config gave one.
	User string
	// Cgroup is the path relative to the cgroup v2 root, without leading or
	// trailing slash (ByCgroup).
	Cgroup string
	Mark   uint32 // ByMark
}

// CgroupLevel is the depth of the cgroup below the cgroup v2 root, the level
// nftables' "socket cgroupv2 level" expression compares at.
func (id Identity) CgroupLevel() int {
	if id.Kind != ByCgroup || id.Cgroup == "" {
		return 0
	}
	n := 1
	for i := 0; i < len(id.Cgroup); i++ {
		if id.Cgroup[i] == '/' {
			n++
		}
	}
	return n
}

func (id Identity) String() string {
	switch id.Kind {
	case ByUID:
		if id.User != "" {
			return fmt.Sprintf("uid %d (%s)", id.UID, id.User)
		}
		return fmt.Sprintf("uid %d", id.UID)
	case ByCgroup:
		return "cgroup " + id.Cgroup
	case ByMark:
		return fmt.Sprintf("mark %#x", id.Mark)
	}
	return "none"
}

// HostRule allows names matching Pattern on Ports.
type HostRule struct {
	Pattern hostname.Pattern
	Ports   Ports
	// Source is where the rule came from, such as
	// "weather.json: Capabilities.AllowedConnections[2]" or "profile azure-sphere".
	Source string
}

// AddrRule allows one literal address on Ports.
type AddrRule struct {
	Addr   netip.Addr
	Ports  Ports
	Source string
}

// App is one identity's compiled rules. The system identity is an App too.
type App struct {
	Name     string
	Identity Identity
	// ManifestPath is empty for the system identity.
	ManifestPath string
	Hosts        []HostRule
	Addrs        []AddrRule
	// TCPServerPorts and UDPServerPorts are the ports the app may accept on.
	TCPServerPorts []uint16
	UDPServerPorts []uint16
	// DNSPort is the loopback port of the app's DNS stub; its DNS queries are
	// redirected there. Zero for the system identity.
	DNSPort uint16

	matcher *hostname.Matcher[int]
}

// NameMatch is the answer to "may this app reach this name?".
type NameMatch struct {
	Ports Ports
	// Rules are the indexes into App.Hosts that matched.
	Rules []int
}

// MatchName reports whether the app may reach the canonical query name
// (see hostname.CanonicalQuery) and on which ports.
func (a *App) MatchName(name string) (NameMatch, bool) {
	if a.matcher == nil {
		return NameMatch{}, false
	}
	var buf [8]int
	idx := a.matcher.AppendMatches(buf[:0], name)
	if len(idx) == 0 {
		return NameMatch{}, false
	}
	m := NameMatch{Ports: Ports{}, Rules: slices.Clone(idx)}
	for _, i := range idx {
		m.Ports = m.Ports.Union(a.Hosts[i].Ports)
	}
	return m, true
}

// AllowsName is MatchName without the details.
func (a *App) AllowsName(name string) bool {
	return a.matcher != nil && a.matcher.Matches(name)
}

// buildMatcher indexes Hosts; Compile calls it once.
func (a *App) buildMatcher() {
	a.matcher = hostname.NewMatcher[int]()
	for i, h := range a.Hosts {
		a.matcher.Add(h.Pattern, i)
	}
}

// ServiceLink is the serial IP link to a field engineer's PC.
type ServiceLink struct {
	Enabled   bool
	Interface string
	Prefix    netip.Prefix // 192.168.35.0/24
	Device    netip.Addr   // 192.168.35.2
	APIPort   uint16
}

// DNS holds what the resolver stubs and the learned store need.
type DNS struct {
	// Upstreams are the servers the stubs forward to; none is legal (an
	// empty resolv.conf at boot) and makes allowed names SERVFAIL.
	Upstreams []netip.AddrPort
	// ResolvConf is the file Upstreams were read from, empty when the
	// config lists them; the daemon watches it. ResolvConfProblem says why
	// it gave no upstreams, if it gave none.
	ResolvConf        string
	ResolvConfProblem string

	StubPortBase  uint16
	TTLFloor      time.Duration
	TTLCeiling    time.Duration
	Grace         time.Duration
	MaxPerApp     int
	MaxPerName    int
	InsertTimeout time.Duration
	QueryTimeout  time.Duration
	// PrivateAllowed are the names whose answers may hold private, loopback
	// or link-local addresses (rebinding protection exempts them).
	PrivateAllowed []hostname.Pattern
	// RateLimit is queries per second per app, Burst its bucket size;
	// MaxInFlight caps concurrent upstream queries per app.
	RateLimit   float64
	Burst       int
	MaxInFlight int
}

// Policy is the compiled, immutable whole. Nothing may modify it after
// Compile returns.
type Policy struct {
	Mode       Mode
	Unmanaged  Unmanaged
	Apps       []*App // config order
	System     *App
	SystemMark uint32
	NFLOGGroup uint16
	// LogRate is how many denial records per second each chain may send to
	// NFLOG; LogBurst its bucket.
	LogRate     uint32
	LogBurst    uint32
	ServiceLink ServiceLink
	DNS         DNS
	// MetricsListen, if valid, is the TCP address pinholed serves /metrics
	// on besides its API socket; the firewall lets scrapers reach it.
	MetricsListen netip.AddrPort

	byName map[string]*App
}

// App returns the app, or the system identity, with that name.
func (p *Policy) App(name string) *App {
	return p.byName[name]
}

// Identities returns the system identity followed by every app.
func (p *Policy) Identities() []*App {
	out := make([]*App, 0, len(p.Apps)+1)
	if p.System != nil {
		out = append(out, p.System)
	}
	return append(out, p.Apps...)
}

// index builds the lookup tables; Compile and NewForTest call it.
func (p *Policy) index() {
	p.byName = make(map[string]*App, len(p.Apps)+1)
	for _, a := range p.Identities() {
		a.buildMatcher()
		p.byName[a.Name] = a
	}
}

// Finish indexes a Policy built by hand, as tests of other packages do. The
// Policy must not be changed afterwards.
func Finish(p *Policy) *Policy {
	p.index()
	return p
}
