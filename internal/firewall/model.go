package firewall

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"

	"github.com/pinhole-net/pinhole/internal/logprefix"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Log rate defaults when the policy leaves them zero: denial records per
// second per chain, and the bucket.
const (
	DefaultLogRate  = 10
	DefaultLogBurst = 20
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,30}$`)

// ident is one identity (an app or the system) as the table sees it.
type ident struct {
	app   *policy.App
	name  string
	kind  policy.IdentityKind
	level int    // cgroup level (ByCgroup)
	cgID  uint64 // resolved cgroup id; 0 while the cgroup does not exist
}

// model is what one Apply installs, derived and validated from the policy.
// The Firewall keeps it for Allow, Revoke and SetCgroupID.
type model struct {
	p         *policy.Policy
	idents    []*ident // the system first, then the apps in config order
	byName    map[string]*ident
	levels    []int // cgroup levels in use, deepest first
	srvLevels []int // cgroup levels of apps with server ports, deepest first
	uidSrv    bool  // some app identified by UID has server ports
	cgSrv     bool  // some app identified by cgroup has server ports
	uidApps   bool
	stubPorts []uint16
	literals  []Element // permanent elements from the manifests
	permanent map[elemKey]bool
	logRate   uint32
	logBurst  uint32
}

// newModel validates p and resolves cgroup ids. A cgroup that does not exist
// yet is left unresolved (id 0).
func newModel(p *policy.Policy, cgroupID func(string) (uint64, error), log *slog.Logger) (*model, error) {
	if p == nil {
		return nil, errors.New("policy is nil")
	}
	switch p.Mode {
	case policy.ModeEnforce, policy.ModeAudit:
	default:
		return nil, fmt.Errorf("policy mode %q: want enforce or audit", p.Mode)
	}
	switch p.Unmanaged {
	case policy.UnmanagedDeny, policy.UnmanagedAllow:
	default:
		return nil, fmt.Errorf("policy unmanaged %q: want deny or allow", p.Unmanaged)
	}
	m := &model{
		p:         p,
		byName:    map[string]*ident{},
		permanent: map[elemKey]bool{},
		logRate:   cmp.Or(p.LogRate, DefaultLogRate),
		logBurst:  cmp.Or(p.LogBurst, DefaultLogBurst),
	}
	if sl := p.ServiceLink; sl.Enabled {
		if sl.Interface == "" || len(sl.Interface) > 15 || !sl.Prefix.IsValid() || sl.APIPort == 0 {
			return nil, fmt.Errorf("service link: needs an interface name of 1..15 bytes, a prefix and an API port (have %q, %v, %d)",
				sl.Interface, sl.Prefix, sl.APIPort)
		}
	}
	uids := map[uint32]string{}
	cgroups := map[string]string{}
	stubs := map[uint16]string{}
	levels := map[int]bool{}
	srvLevels := map[int]bool{}
	for _, a := range p.Identities() {
		id, err := m.addIdent(a, p)
		if err != nil {
			return nil, err
		}
		switch a.Identity.Kind {
		case policy.ByUID:
			if other, ok := uids[a.Identity.UID]; ok {
				return nil, fmt.Errorf("apps %q and %q both have uid %d", other, a.Name, a.Identity.UID)
			}
			uids[a.Identity.UID] = a.Name
			m.uidApps = true
			if hasServerPorts(a) {
				m.uidSrv = true
			}
		case policy.ByCgroup:
			if other, ok := cgroups[a.Identity.Cgroup]; ok {
				return nil, fmt.Errorf("apps %q and %q both have cgroup %q", other, a.Name, a.Identity.Cgroup)
			}
			cgroups[a.Identity.Cgroup] = a.Name
			levels[id.level] = true
			if hasServerPorts(a) {
				m.cgSrv = true
				srvLevels[id.level] = true
			}
			cgid, err := cgroupID(a.Identity.Cgroup)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				log.Info("app cgroup does not exist yet; its processes are unmanaged until it appears",
					"app", a.Name, "cgroup", a.Identity.Cgroup)
			case err != nil:
				return nil, fmt.Errorf("app %q: cgroup id of %q: %w", a.Name, a.Identity.Cgroup, err)
			default:
				id.cgID = cgid
			}
		}
		if a.DNSPort != 0 {
			if other, ok := stubs[a.DNSPort]; ok {
				return nil, fmt.Errorf("apps %q and %q both have DNS stub port %d", other, a.Name, a.DNSPort)
			}
			stubs[a.DNSPort] = a.Name
			m.stubPorts = append(m.stubPorts, a.DNSPort)
		}
	}
	m.levels = sortedDesc(levels)
	m.srvLevels = sortedDesc(srvLevels)
	slices.Sort(m.stubPorts)
	return m, nil
}

func (m *model) addIdent(a *policy.App, p *policy.Policy) (*ident, error) {
	if a == nil {
		return nil, errors.New("policy has a nil app")
	}
	isSystem := a == p.System
	switch {
	case isSystem && a.Name != policy.SystemName:
		return nil, fmt.Errorf("system identity is named %q, want %q", a.Name, policy.SystemName)
	case !isSystem && (a.Name == policy.SystemName || a.Name == policy.UnmanagedName):
		return nil, fmt.Errorf("app name %q is reserved", a.Name)
	case !nameRE.MatchString(a.Name):
		return nil, fmt.Errorf("app name %q: want %s", a.Name, nameRE)
	}
	if _, dup := m.byName[a.Name]; dup {
		return nil, fmt.Errorf("app %q appears twice", a.Name)
	}
	if len(logprefix.Prefix{Verdict: logprefix.Audit, Direction: logprefix.Out, Identity: a.Name}.String()) > logprefix.MaxLen {
		return nil, fmt.Errorf("app %q: name too long for an NFLOG prefix", a.Name)
	}
	id := &ident{app: a, name: a.Name, kind: a.Identity.Kind}
	switch a.Identity.Kind {
	case policy.ByMark:
		if !isSystem {
			return nil, fmt.Errorf("app %q: only the system identity may be recognised by mark", a.Name)
		}
		if p.SystemMark == 0 {
			return nil, errors.New("system identity needs a non-zero socket mark")
		}
	case policy.ByUID:
	case policy.ByCgroup:
		id.level = a.Identity.CgroupLevel()
		if id.level == 0 {
			return nil, fmt.Errorf("app %q: empty cgroup path", a.Name)
		}
	default:
		return nil, fmt.Errorf("app %q: unknown identity kind %v", a.Name, a.Identity.Kind)
	}
	if isSystem && hasServerPorts(a) {
		return nil, errors.New("system identity cannot declare server ports")
	}
	for _, ports := range [][]uint16{a.TCPServerPorts, a.UDPServerPorts} {
		if slices.Contains(ports, 0) {
			return nil, fmt.Errorf("app %q: server port 0", a.Name)
		}
	}
	for i, r := range a.Addrs {
		if !r.Addr.IsValid() {
			return nil, fmt.Errorf("app %q: address rule %d (%s) has no address", a.Name, i, r.Source)
		}
		add := func(proto policy.Proto, port uint16) error {
			e, err := Element{App: a.Name, Addr: r.Addr, Proto: proto, Port: port}.normalize()
			if err != nil {
				return fmt.Errorf("app %q: address rule %d (%s): %w", a.Name, i, r.Source, err)
			}
			if !m.permanent[e.key()] {
				m.permanent[e.key()] = true
				m.literals = append(m.literals, e)
			}
			return nil
		}
		if r.Ports.Any() {
			if err := add(0, 0); err != nil {
				return nil, err
			}
			continue
		}
		for _, ps := range r.Ports {
			if err := add(ps.Proto, ps.Port); err != nil {
				return nil, err
			}
		}
	}
	m.idents = append(m.idents, id)
	m.byName[a.Name] = id
	return id, nil
}

func hasServerPorts(a *policy.App) bool {
	return len(a.TCPServerPorts) > 0 || len(a.UDPServerPorts) > 0
}

func sortedDesc(set map[int]bool) []int {
	out := make([]int, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// dispatchOrder is the order identities are matched in: apps by cgroup
// first, deepest cgroup first, then apps by UID, each in config order. The
// system (by mark) is matched before all of them.
func (m *model) dispatchOrder() []*ident {
	var out []*ident
	for _, l := range m.levels {
		for _, id := range m.idents {
			if id.kind == policy.ByCgroup && id.level == l {
				out = append(out, id)
			}
		}
	}
	for _, id := range m.idents {
		if id.kind == policy.ByUID {
			out = append(out, id)
		}
	}
	return out
}

// serverPorts lists an app's server ports as (protocol, port) pairs.
func serverPorts(a *policy.App) []policy.PortSpec {
	var out []policy.PortSpec
	for _, p := range a.TCPServerPorts {
		out = append(out, policy.PortSpec{Proto: policy.TCP, Port: p})
	}
	for _, p := range a.UDPServerPorts {
		out = append(out, policy.PortSpec{Proto: policy.UDP, Port: p})
	}
	return out
}

// prefix is the NFLOG prefix of a denial (or audit record) of identity who.
func (m *model) prefix(dir logprefix.Direction, who string) string {
	v := logprefix.Deny
	if m.p.Mode == policy.ModeAudit {
		v = logprefix.Audit
	}
	return logprefix.Prefix{Verdict: v, Direction: dir, Identity: who}.String()
}

// checkElement validates e for this model: the identity must exist.
func (m *model) checkElement(e Element) (Element, error) {
	e, err := e.normalize()
	if err != nil {
		return e, err
	}
	if _, ok := m.byName[e.App]; !ok {
		return e, fmt.Errorf("element %s: no app %q in the applied policy", e, e.App)
	}
	return e, nil
}

// learnedElements validates learned elements against m: elements of unknown
// apps are dropped and counted, literals are not duplicated, and duplicates
// keep the longest timeout.
func (m *model) learnedElements(learned []Element) ([]Element, int, error) {
	idx := map[elemKey]int{}
	var out []Element
	dropped := 0
	for _, e := range learned {
		e, err := e.normalize()
		if err != nil {
			return nil, 0, err
		}
		if _, ok := m.byName[e.App]; !ok {
			dropped++
			continue
		}
		k := e.key()
		if m.permanent[k] {
			continue
		}
		if i, ok := idx[k]; ok {
			if e.Timeout == 0 || (out[i].Timeout != 0 && e.Timeout > out[i].Timeout) {
				out[i].Timeout = e.Timeout
			}
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out, dropped, nil
}
