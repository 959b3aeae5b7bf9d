package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/manifest"
)

// Env is what Compile needs from the machine. Tests replace it.
type Env struct {
	// LookupUser returns the UID of a user name.
	LookupUser func(name string) (uint32, error)
	// ReadResolvConf returns the DNS servers of a resolv.conf file; Compile
	// calls it when the config lists no upstreams.
	ReadResolvConf func(path string) ([]netip.AddrPort, error)
}

// DefaultEnv looks users up in the system's user database and reads
// resolv.conf from disk.
func DefaultEnv() Env {
	return Env{LookupUser: lookupUser, ReadResolvConf: config.ReadResolvConf}
}

func lookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has a non-numeric uid %q", name, u.Uid)
	}
	return uint32(uid), nil
}

// Error lists every reason a policy could not be compiled.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "compile policy: " + e.Problems[0]
	}
	return fmt.Sprintf("compile policy: %d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Compile builds the Policy of a config and its apps' manifests, keyed by app
// name, with the machine's user database and resolv.conf.
func Compile(cfg *config.Config, manifests map[string]*manifest.Manifest) (*Policy, error) {
	return CompileWith(cfg, manifests, DefaultEnv())
}

// CompileWith is Compile with an explicit Env. It reports every conflict it
// finds, not only the first, and returns no Policy when there is any.
func CompileWith(cfg *config.Config, manifests map[string]*manifest.Manifest, env Env) (*Policy, error) {
	c := compiler{cfg: cfg, env: env}
	p := &Policy{
		Mode:       Mode(cfg.Mode),
		Unmanaged:  Unmanaged(cfg.Unmanaged),
		SystemMark: cfg.SystemMark,
		NFLOGGroup: cfg.Firewall.NFLOGGroup,
		LogRate:    cfg.Firewall.LogRate,
		LogBurst:   cfg.Firewall.LogBurst,

		MetricsListen: cfg.API.MetricsListen,
	}
	if cfg.ServiceLink.Enabled {
		p.ServiceLink = ServiceLink{
			Enabled:   true,
			Interface: cfg.ServiceLink.Interface,
			Prefix:    config.ServiceLinkPrefix,
			Device:    cfg.ServiceLink.Address,
			APIPort:   cfg.ServiceLink.APIPort,
		}
	}
	p.DNS = c.dns()
	for i, ac := range cfg.Apps {
		if a := c.app(i, ac, manifests[ac.Name]); a != nil {
			p.Apps = append(p.Apps, a)
		}
	}
	p.System = c.system(p.DNS.Upstreams)
	c.conflicts(p)
	if len(c.problems) > 0 {
		return nil, &Error{Problems: c.problems}
	}
	p.index()
	return p, nil
}

type compiler struct {
	cfg      *config.Config
	env      Env
	problems []string
}

func (c *compiler) problem(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *compiler) dns() DNS {
	d := c.cfg.DNS
	out := DNS{
		Upstreams:      d.Upstreams,
		StubPortBase:   d.StubPortBase,
		TTLFloor:       d.TTLFloor,
		TTLCeiling:     d.TTLCeiling,
		Grace:          d.Grace,
		MaxPerApp:      d.MaxAddressesPerApp,
		MaxPerName:     d.MaxAddressesPerName,
		InsertTimeout:  d.InsertTimeout,
		QueryTimeout:   d.QueryTimeout,
		PrivateAllowed: d.AllowPrivate,
		RateLimit:      d.RateLimit,
		Burst:          d.Burst,
		MaxInFlight:    d.MaxInFlight,
	}
	if len(out.Upstreams) == 0 {
		// An empty or missing resolv.conf is normal before DHCP has run: the
		// policy compiles without upstreams and the daemon watches the file.
		out.ResolvConf = d.ResolvConf
		ups, err := c.env.ReadResolvConf(d.ResolvConf)
		if err != nil {
			out.ResolvConfProblem = err.Error()
			ups = nil
		}
		out.Upstreams = ups
	}
	return out
}

func (c *compiler) app(i int, ac config.App, m *manifest.Manifest) *App {
	if m == nil {
		c.problem("app %q: no manifest loaded (%s)", ac.Name, ac.Manifest)
		return nil
	}
	a := &App{
		Name:         ac.Name,
		ManifestPath: ac.Manifest,
		DNSPort:      c.cfg.StubPort(i),
	}
	switch ac.Identity.Kind {
	case config.IdentityUID:
		a.Identity = Identity{Kind: ByUID, UID: ac.Identity.UID}
	case config.IdentityUser:
		uid, err := c.env.LookupUser(ac.Identity.User)
		switch {
		case err != nil:
			c.problem("app %q: user %q: %v", ac.Name, ac.Identity.User, err)
		case uid == 0:
			c.problem("app %q: user %q is root; an app cannot be root", ac.Name, ac.Identity.User)
		}
		a.Identity = Identity{Kind: ByUID, UID: uid, User: ac.Identity.User}
	case config.IdentityCgroup:
		a.Identity = Identity{Kind: ByCgroup, Cgroup: ac.Identity.Cgroup}
	default:
		c.problem("app %q: no identity", ac.Name)
	}
	if uint32(a.DNSPort) < uint32(c.cfg.DNS.StubPortBase) {
		c.problem("app %q: DNS stub port overflows past 65535 (dns.stub_port_base %d is too high for %d apps)",
			ac.Name, c.cfg.DNS.StubPortBase, len(c.cfg.Apps))
	}
	caps := m.Capabilities
	for _, conn := range caps.AllowedConnections {
		source := fmt.Sprintf("%s: %s", m.File, conn.Path)
		var ports Ports
		if conn.Port != 0 {
			ports = BothProtocols(conn.Port)
		}
		if conn.IsAddr() {
			a.Addrs = addAddr(a.Addrs, AddrRule{Addr: conn.Addr, Ports: ports, Source: source})
		} else {
			a.Hosts = addHost(a.Hosts, HostRule{Pattern: conn.Pattern, Ports: ports, Source: source})
		}
	}
	a.TCPServerPorts = sortedUnique(caps.AllowedTCPServerPorts)
	a.UDPServerPorts = sortedUnique(caps.AllowedUDPServerPorts)
	return a
}

// system builds pinholed's own identity from the profile, the DNS upstreams,
// the time servers and the proxy.
// SourceUpstream is the Source of the system's rules for its DNS upstreams.
const SourceUpstream = "dns upstream"

func (c *compiler) system(upstreams []netip.AddrPort) *App {
	s := &App{
		Name:     SystemName,
		Identity: Identity{Kind: ByMark, Mark: c.cfg.SystemMark},
	}
	prof, err := c.cfg.Profile.Load()
	if err != nil {
		c.problem("profile: %v", err)
		return s
	}
	source := "profile " + prof.Name
	timeOn := c.cfg.Time.Enabled
	profileNTP := timeOn && (c.cfg.Time.Source != config.TimeSourceCustom || c.cfg.Time.Fallback)
	for _, ep := range prof.Endpoints {
		if ep.Feature == catalog.FeatureTime && !profileNTP {
			continue
		}
		ports := Ports{{Proto: protoOf(ep.Transport), Port: ep.Port}}
		if ep.Kind == catalog.KindDNSServers {
			continue // the upstreams below, on their real ports
		}
		for _, h := range ep.Hosts {
			pat, err := hostname.ParsePattern(h)
			if err != nil {
				c.problem("profile %s: host %q: %v", prof.Name, h, err)
				continue
			}
			s.Hosts = addHost(s.Hosts, HostRule{Pattern: pat, Ports: ports, Source: source})
		}
		for _, addr := range ep.Addrs {
			s.Addrs = addAddr(s.Addrs, AddrRule{Addr: addr, Ports: ports, Source: source})
		}
	}
	for _, up := range upstreams {
		ports := Ports{{Proto: TCP, Port: up.Port()}, {Proto: UDP, Port: up.Port()}}
		s.Addrs = addAddr(s.Addrs, AddrRule{Addr: up.Addr().Unmap(), Ports: ports, Source: SourceUpstream})
	}
	if timeOn && c.cfg.Time.Source == config.TimeSourceCustom {
		for _, h := range c.cfg.Time.Servers {
			c.addHost(s, h, Ports{{Proto: UDP, Port: 123}}, "time.servers")
		}
	}
	if px := c.cfg.Proxy; px.Enabled && !px.Address.IsZero() {
		c.addHost(s, px.Address, Ports{{Proto: TCP, Port: px.Port}}, "proxy")
	}
	return s
}

func (c *compiler) addHost(a *App, h config.Host, ports Ports, source string) {
	if h.Addr.IsValid() {
		a.Addrs = addAddr(a.Addrs, AddrRule{Addr: h.Addr, Ports: ports, Source: source})
		return
	}
	pat, err := hostname.ParsePattern(h.Name)
	if err != nil {
		c.problem("%s: %q: %v", source, h.Name, err)
		return
	}
	a.Hosts = addHost(a.Hosts, HostRule{Pattern: pat, Ports: ports, Source: source})
}

// conflicts finds what two apps cannot share: server ports and identities.
func (c *compiler) conflicts(p *Policy) {
	tcp := map[uint16]string{}
	udp := map[uint16]string{}
	stubLo, stubHi := uint32(c.cfg.DNS.StubPortBase), uint32(c.cfg.DNS.StubPortBase)+uint32(len(c.cfg.Apps))
	claim := func(table map[uint16]string, proto string, a *App, port uint16) {
		if prev, ok := table[port]; ok {
			c.problem("%s server port %d is claimed by both app %q and app %q; only one app may serve a port", proto, port, prev, a.Name)
			return
		}
		table[port] = a.Name
		if uint32(port) >= stubLo && uint32(port) < stubHi {
			c.problem("app %q: %s server port %d lies in the DNS stub ports %d-%d (dns.stub_port_base)", a.Name, proto, port, stubLo, stubHi-1)
		}
		if proto == "TCP" && p.ServiceLink.Enabled && port == p.ServiceLink.APIPort {
			c.problem("app %q: TCP server port %d is the service link's API port", a.Name, port)
		}
	}
	uids := map[uint32]string{}
	var cgroups []*App
	for _, a := range p.Apps {
		for _, port := range a.TCPServerPorts {
			claim(tcp, "TCP", a, port)
		}
		for _, port := range a.UDPServerPorts {
			claim(udp, "UDP", a, port)
		}
		switch a.Identity.Kind {
		case ByUID:
			if prev, ok := uids[a.Identity.UID]; ok {
				c.problem("apps %q and %q have the same identity (%s); each app needs its own", prev, a.Name, a.Identity)
			} else {
				uids[a.Identity.UID] = a.Name
			}
		case ByCgroup:
			for _, b := range cgroups {
				switch {
				case b.Identity.Cgroup == a.Identity.Cgroup:
					c.problem("apps %q and %q have the same identity (cgroup %s); each app needs its own", b.Name, a.Name, a.Identity.Cgroup)
				case isBelow(a.Identity.Cgroup, b.Identity.Cgroup), isBelow(b.Identity.Cgroup, a.Identity.Cgroup):
					c.problem("apps %q (cgroup %s) and %q (cgroup %s) nest; a process in the inner one would belong to both",
						b.Name, b.Identity.Cgroup, a.Name, a.Identity.Cgroup)
				}
			}
			cgroups = append(cgroups, a)
		}
	}
}

// isBelow reports whether cgroup path a lies strictly inside b.
func isBelow(a, b string) bool {
	return strings.HasPrefix(a, b+"/")
}

func protoOf(t catalog.Transport) Proto {
	if t == catalog.UDP {
		return UDP
	}
	return TCP
}

// addHost appends r, merging it into an existing rule for the same pattern.
func addHost(rules []HostRule, r HostRule) []HostRule {
	for i := range rules {
		if rules[i].Pattern == r.Pattern {
			rules[i].Ports = rules[i].Ports.Union(r.Ports)
			return rules
		}
	}
	return append(rules, r)
}

func addAddr(rules []AddrRule, r AddrRule) []AddrRule {
	for i := range rules {
		if rules[i].Addr == r.Addr {
			rules[i].Ports = rules[i].Ports.Union(r.Ports)
			return rules
		}
	}
	return append(rules, r)
}

func sortedUnique(ports []uint16) []uint16 {
	out := slices.Clone(ports)
	slices.Sort(out)
	return slices.Compact(out)
}

// LoadManifests reads the manifest of every app in cfg. It returns the
// manifests that loaded, every warning, and an error joining every manifest
// that did not load.
func LoadManifests(cfg *config.Config) (map[string]*manifest.Manifest, []manifest.Diagnostic, error) {
	out := make(map[string]*manifest.Manifest, len(cfg.Apps))
	var warnings []manifest.Diagnostic
	var errs []error
	for _, a := range cfg.Apps {
		m, diags, err := manifest.Load(a.Manifest)
		if err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", a.Name, err))
			continue
		}
		warnings = append(warnings, diags...)
		out[a.Name] = m
	}
	return out, warnings, errors.Join(errs...)
}

// Load reads the manifests of cfg's apps and compiles the policy. Nothing is
// returned but the error when any manifest or the policy is invalid.
func Load(cfg *config.Config) (*Policy, []manifest.Diagnostic, error) {
	ms, warnings, err := LoadManifests(cfg)
	if err != nil {
		return nil, warnings, err
	}
	p, err := Compile(cfg, ms)
	if err != nil {
		return nil, warnings, err
	}
	return p, warnings, nil
}
