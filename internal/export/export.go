// Package export writes what devices running pinhole must reach as rules for
// the firewall in front of them: an nftables table for a Linux gateway, whose
// sets dnsmasq fills from the DNS answers it forwards (--nftset), so that
// host names work without a list of addresses that goes stale.
package export

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// DefaultTable is the nftables table the export defines.
const DefaultTable = "pinhole_devices"

// Rule is one thing the devices must reach: host patterns and addresses on
// some ports, for an owner (pinholed or an app).
type Rule struct {
	// Owner is who needs it: "pinholed" or an app's name.
	Owner string
	Hosts []hostname.Pattern
	Addrs []netip.Addr
	// Ports are the destinations; nil means every port and protocol (an
	// Azure Sphere app's AllowedConnections entry).
	Ports policy.Ports
	// Why says what the rule is for ("Communication with NTP server").
	Why string
	// DNSServers marks the rule of whatever DNS servers the devices use; it
	// lists no hosts, and Options.DNSServers fills it.
	DNSServers bool
}

// Options say for which devices and under which names the rules are written.
type Options struct {
	// Table is the nftables table's name; empty means DefaultTable.
	Table string
	// Devices are the addresses of the devices the rules restrict. Required.
	Devices []netip.Prefix
	// DNSServers are the DNS servers the devices use, when it is not the
	// gateway itself (a query to the gateway is not forwarded traffic).
	DNSServers []netip.Addr
	// Title says in the files' headers what the rules were made from.
	Title string
	// Notes are listed under "Not in these rules" (an app's server ports).
	Notes []string
}

// Plan is the computed export: nftables sets by destination port, the host
// names dnsmasq puts into them, and what cannot be exported.
type Plan struct {
	table   string
	title   string
	devices []netip.Prefix
	// sets are by key ("tcp_443", "any"), in output order.
	sets []*portSet
	// domains are dnsmasq's nftset lines: a domain and every set its
	// answers must go into.
	domains []domainLine
	// skipped are entries that have no equivalent, with the reason.
	skipped []string
	// noDNS is set when the devices need DNS servers that no option named.
	noDNS bool
}

// portSet is one destination port (or any port) and what may be reached on
// it.
type portSet struct {
	key   string
	ports policy.Ports // one PortSpec, or nil for any
	addrs []netip.Addr
	// groups say, for the comment above the set, who needs which
	// destinations and why.
	groups []noteGroup
	// hasHosts tells whether dnsmasq fills the set.
	hasHosts bool
}

// noteGroup is one owner's reason and the destinations it covers.
type noteGroup struct {
	head  string // "pinholed: Communication with NTP server"
	dests []string
}

type domainLine struct {
	domain  string
	sets    []string // keys
	entries []string // the entries it stands for, as written
}

var tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)

// NewPlan computes the export of rules. It fails when no device prefix is
// given or the table name is not one nft accepts.
func NewPlan(rules []Rule, opts Options) (*Plan, error) {
	p := &Plan{table: cmp.Or(opts.Table, DefaultTable), title: opts.Title, skipped: slices.Clone(opts.Notes)}
	if !tableName.MatchString(p.table) {
		return nil, fmt.Errorf("table name %q: want a letter, then letters, digits or _ (at most 32)", p.table)
	}
	if len(opts.Devices) == 0 {
		return nil, errors.New("no device addresses: say which addresses the devices have (a prefix such as 192.168.10.0/24)")
	}
	for _, d := range opts.Devices {
		p.devices = append(p.devices, d.Masked())
	}
	byKey := map[string]*portSet{}
	set := func(ps *policy.PortSpec) *portSet {
		key, ports := "any", policy.Ports(nil)
		if ps != nil {
			key, ports = fmt.Sprintf("%s_%d", ps.Proto, ps.Port), policy.Ports{*ps}
		}
		s := byKey[key]
		if s == nil {
			s = &portSet{key: key, ports: ports}
			byKey[key] = s
		}
		return s
	}
	// Which sets each dnsmasq domain feeds, before wildcards are merged, and
	// the entries it stands for.
	direct := map[string][]string{}
	entries := map[string][]string{}
	wildcard := map[string]bool{}
	for _, r := range rules {
		var specs []*policy.PortSpec
		if r.Ports.Any() {
			specs = []*policy.PortSpec{nil}
		} else {
			for i := range r.Ports {
				specs = append(specs, &r.Ports[i])
			}
		}
		addrs := r.Addrs
		if r.DNSServers {
			if len(opts.DNSServers) == 0 {
				p.noDNS = true
			}
			addrs = append(slices.Clone(addrs), opts.DNSServers...)
		}
		for _, ps := range specs {
			s := set(ps)
			for _, a := range addrs {
				a = a.Unmap()
				if !slices.Contains(s.addrs, a) {
					s.addrs = append(s.addrs, a)
				}
				s.addNote(r.Owner, r.Why, a.String())
			}
			for _, h := range r.Hosts {
				if h.Kind == hostname.Service {
					p.skip(fmt.Sprintf("%s (%s): a DNS-SD service name; its addresses come from SRV targets that dnsmasq cannot tie to it", h, r.Owner))
					continue
				}
				dest := h.String()
				if h.Kind == hostname.Wildcard {
					dest += " (dnsmasq: also " + h.Name + ")"
				}
				s.addNote(r.Owner, r.Why, dest)
				s.hasHosts = true
				direct[h.Name] = appendNew(direct[h.Name], s.key)
				entries[h.Name] = appendNew(entries[h.Name], h.String())
				if h.Kind == hostname.Wildcard {
					wildcard[h.Name] = true
				}
			}
		}
	}
	p.domains = mergeDomains(direct, entries, wildcard)
	for _, s := range byKey {
		if len(s.addrs) > 0 || s.hasHosts {
			p.sets = append(p.sets, s)
		}
	}
	slices.SortFunc(p.sets, func(a, b *portSet) int { return compareKeys(a, b) })
	return p, nil
}

func (s *portSet) addNote(owner, why, dest string) {
	head := owner + ": " + why
	for i := range s.groups {
		if s.groups[i].head == head {
			s.groups[i].dests = appendNew(s.groups[i].dests, dest)
			return
		}
	}
	s.groups = append(s.groups, noteGroup{head: head, dests: []string{dest}})
}

func (p *Plan) skip(why string) {
	if !slices.Contains(p.skipped, why) {
		p.skipped = append(p.skipped, why)
	}
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// mergeDomains turns the domains into dnsmasq lines. dnsmasq applies only the
// most specific nftset line to a name, and a line for d matches d and every
// name under it, so each line carries the sets of the wildcards above it too:
// "api.example.com" gets the sets of "*.example.com" as well as its own.
func mergeDomains(direct, entries map[string][]string, wildcard map[string]bool) []domainLine {
	var out []domainLine
	for _, d := range slices.Sorted(maps.Keys(direct)) {
		sets := slices.Clone(direct[d])
		for parent := d; ; {
			_, rest, ok := strings.Cut(parent, ".")
			if !ok {
				break
			}
			parent = rest
			if wildcard[parent] {
				for _, k := range direct[parent] {
					sets = appendNew(sets, k)
				}
			}
		}
		slices.SortFunc(sets, compareKeyNames)
		out = append(out, domainLine{domain: d, sets: sets, entries: entries[d]})
	}
	return out
}

func compareKeys(a, b *portSet) int { return compareKeyNames(a.key, b.key) }

// compareKeyNames orders "any" first, then by protocol and port number.
func compareKeyNames(a, b string) int {
	pa, na := splitKey(a)
	pb, nb := splitKey(b)
	return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(na, nb))
}

func splitKey(k string) (string, int) {
	proto, port, ok := strings.Cut(k, "_")
	if !ok {
		return "", 0
	}
	n := 0
	fmt.Sscan(port, &n)
	return proto, n
}
