package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// TableName is the nftables table pinhole owns, in the inet family.
const TableName = "pinhole"

// Element is one allowed destination of one identity. Port 0 allows every
// port and protocol of Addr (the plain IPv4/IPv6 set); otherwise Proto must be
// TCP or UDP and only that port is allowed (the concatenated set). Timeout 0
// makes the element permanent; elements read back from the kernel carry the
// time left instead of the original timeout.
type Element struct {
	App     string
	Addr    netip.Addr
	Proto   policy.Proto
	Port    uint16
	Timeout time.Duration
}

func (e Element) String() string {
	s := e.App + " " + e.Addr.String()
	if e.Port != 0 {
		s += fmt.Sprintf(" %s/%d", e.Proto, e.Port)
	}
	if e.Timeout != 0 {
		s += " timeout " + e.Timeout.String()
	}
	return s
}

// Options configures New.
type Options struct {
	Logger *slog.Logger
	// NetNSFd is an open /proc/PID/ns/net or /run/netns/NAME of the namespace
	// to program; 0 or -1 means the caller's own namespace.
	NetNSFd int
	// AllowInitialNetns lets New program the machine's own network namespace.
	// Without it New refuses, so that tests and careless runs cannot cut a
	// host off (daemon flag --i-mean-this-host).
	AllowInitialNetns bool
	// ReadOnly opens the table for reading only (pinhole firewall show): the
	// namespace check is skipped and every method that writes fails.
	ReadOnly bool
	// CgroupID resolves a cgroup path relative to the cgroup v2 root to its id
	// (the directory's inode number). Nil uses internal/cgroup.ID. An error
	// wrapping fs.ErrNotExist means the app's cgroup does not exist yet; its
	// dispatch entries are then left out until SetCgroupID.
	CgroupID func(rel string) (uint64, error)
}

// ErrReadOnly is returned by writing methods of a Firewall opened ReadOnly.
var ErrReadOnly = errors.New("firewall opened read-only")

// ErrNoPolicy is returned by methods that need a policy before Apply ran.
var ErrNoPolicy = errors.New("no policy applied yet")

// Ruleset is what one netfilter hook runs, in the shape of Azure Sphere's
// GET /net/firewall/rulesets, plus pinhole's own fields (type, chain, policy).
type Ruleset struct {
	Hook    string `json:"hook"` // "INPUT", "FORWARD" or "OUTPUT"
	IsValid bool   `json:"isValid"`
	Type    string `json:"type"`  // "filter" or "nat"
	Chain   string `json:"chain"` // the base chain
	Policy  string `json:"policy"`
	Rules   []Rule `json:"rules"`
}

// Rule is one nftables rule. The Azure Sphere fields are filled where the
// rule has that match; Match, Chain, App, Comment, Set and Target are
// pinhole's additions.
type Rule struct {
	SourceIP             string     `json:"sourceIP,omitempty"`
	SourceMask           string     `json:"sourceMask,omitempty"`
	DestinationIP        string     `json:"destinationIP,omitempty"`
	DestinationMask      string     `json:"destinationMask,omitempty"`
	UID                  *uint32    `json:"uid,omitempty"`
	Action               string     `json:"action"`
	InterfaceInName      string     `json:"interfaceInName,omitempty"`
	InterfaceOutName     string     `json:"interfaceOutName,omitempty"`
	State                string     `json:"state,omitempty"`
	Protocol             string     `json:"protocol"`
	SourcePortRange      *PortRange `json:"sourcePortRange,omitempty"`
	DestinationPortRange *PortRange `json:"destinationPortRange,omitempty"`
	Packets              uint64     `json:"packets"`
	Bytes                uint64     `json:"bytes"`

	Chain   string `json:"chain"`
	App     string `json:"app,omitempty"`
	Match   string `json:"match"`
	Comment string `json:"comment"`
	Set     string `json:"set,omitempty"`
	Target  string `json:"target,omitempty"`
	Handle  uint64 `json:"handle"`
}

// PortRange is an inclusive port range.
type PortRange struct {
	Min uint16 `json:"min"`
	Max uint16 `json:"max"`
}

// Names of chains and sets. App sets are prefixed so that every name starts
// with a letter, as the nft parser wants, and cannot clash with global names.
const (
	chainInput     = "input"
	chainOutput    = "output"
	chainForward   = "forward"
	chainNATOutput = "nat_output"
	chainUIDServer = "uid_srv"
	prefixOut      = "out_"
	prefixIn       = "in_"
)

func outChain(app string) string { return prefixOut + app }
func inChain(app string) string  { return prefixIn + app }

// setKind is one of the four address sets of an identity.
type setKind uint8

const (
	setV4 setKind = iota
	setV6
	setV4Port
	setV6Port
)

var setKinds = [...]setKind{setV4, setV6, setV4Port, setV6Port}

func (k setKind) prefix() string {
	return [...]string{"v4_", "v6_", "v4p_", "v6p_"}[k]
}

func appSet(app string, k setKind) string { return k.prefix() + app }

// kindOf tells which set an element belongs in.
func (e Element) kindOf() setKind {
	switch {
	case e.Addr.Is4() && e.Port == 0:
		return setV4
	case e.Addr.Is4():
		return setV4Port
	case e.Port == 0:
		return setV6
	}
	return setV6Port
}

// maxTimeout bounds element timeouts; the kernel takes milliseconds and
// rejects values it cannot turn into jiffies.
const maxTimeout = 365 * 24 * time.Hour

// normalize validates e and returns it in canonical form: IPv4-mapped IPv6
// unmapped, the timeout rounded up to whole milliseconds (a sub-millisecond
// timeout would otherwise reach the kernel as 0, which means permanent).
func (e Element) normalize() (Element, error) {
	if !e.Addr.IsValid() {
		return e, fmt.Errorf("element %q: no address", e.App)
	}
	if e.Addr.Zone() != "" {
		return e, fmt.Errorf("element %s: address has a zone", e)
	}
	e.Addr = e.Addr.Unmap()
	if e.Port == 0 {
		if e.Proto != 0 {
			return e, fmt.Errorf("element %s: protocol %s without a port", e, e.Proto)
		}
	} else if e.Proto != policy.TCP && e.Proto != policy.UDP {
		return e, fmt.Errorf("element %s: port needs protocol tcp or udp", e)
	}
	if e.Timeout < 0 || e.Timeout > maxTimeout {
		return e, fmt.Errorf("element %s: timeout out of range 0..%s", e, maxTimeout)
	}
	if ms := e.Timeout.Truncate(time.Millisecond); ms != e.Timeout {
		e.Timeout = ms + time.Millisecond
	}
	return e, nil
}

// elemKey identifies an element within its identity, ignoring the timeout.
type elemKey struct {
	app   string
	addr  netip.Addr
	proto policy.Proto
	port  uint16
}

func (e Element) key() elemKey { return elemKey{e.App, e.Addr, e.Proto, e.Port} }
