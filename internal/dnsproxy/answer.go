package dnsproxy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// query is what the proxy decided about one question before forwarding it.
type query struct {
	app   string
	name  string // canonical query name
	qtype uint16
	ports policy.Ports
	// via is the allowed name that let name through when name did not match
	// a rule itself (an SRV target), or the DNS-SD service name when it
	// matched a service rule; empty otherwise.
	via string
	// service: name matched a DNS-SD service rule, so SRV targets in the
	// answer become allowed names.
	service bool
}

// maxChain bounds the CNAME chain followed inside one answer.
const maxChain = 16

// rebindError says an answer for a public name held a non-public address.
type rebindError struct {
	name string
	addr netip.Addr
}

func (e *rebindError) Error() string {
	return fmt.Sprintf("%s answered %s, a %s address", e.name, e.addr, addrClass(e.addr))
}

// extract turns an upstream answer into what the app learns: every A and
// AAAA at the end of the CNAME chain, credited to the asked name with the
// chain's smallest TTL, and for DNS-SD questions the SRV targets with their
// addresses. It refuses the whole answer when a public name resolves to a
// non-public address and privateOK does not exempt it.
func extract(q query, resp *dns.Msg, privateOK func(name string) bool) ([]learned.Learning, error) {
	if resp.Rcode != dns.RcodeSuccess {
		return nil, nil
	}
	var out []learned.Learning
	end, chainTTL := followCNAME(resp.Answer, q.name)
	if addrs := addrsOf(resp.Answer, end, chainTTL); len(addrs) > 0 {
		if err := checkRebind(q.name, q.via, addrs, privateOK); err != nil {
			return nil, err
		}
		via := q.via
		if q.service {
			via = "" // the name matched the service rule itself
		}
		out = append(out, learned.Learning{App: q.app, Name: q.name, Via: via, Ports: q.ports, Addrs: addrs})
	}
	if q.service {
		srvs, err := serviceTargets(q, resp, privateOK)
		if err != nil {
			return nil, err
		}
		out = append(out, srvs...)
	}
	return out, nil
}

// followCNAME walks the CNAME records from name and returns the last name
// of the chain and the smallest TTL on the way (0 when there is no CNAME).
func followCNAME(rrs []dns.RR, name string) (string, uint32) {
	var ttl uint32
	first := true
	for range maxChain {
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Class == dns.ClassINET && hostname.CanonicalQuery(c.Hdr.Name) == name {
				next = hostname.CanonicalQuery(c.Target)
				if first || c.Hdr.Ttl < ttl {
					ttl = c.Hdr.Ttl
				}
				first = false
				break
			}
		}
		if next == "" || next == name {
			break
		}
		name = next
	}
	if first {
		return name, ^uint32(0)
	}
	return name, ttl
}

// addrsOf collects the A and AAAA records owned by name, each with the
// smaller of its TTL and maxTTL.
func addrsOf(rrs []dns.RR, name string, maxTTL uint32) []learned.AddrTTL {
	var out []learned.AddrTTL
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class != dns.ClassINET || (h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA) {
			continue
		}
		if hostname.CanonicalQuery(h.Name) != name {
			continue
		}
		var addr netip.Addr
		switch r := rr.(type) {
		case *dns.A:
			addr, _ = netip.AddrFromSlice(r.A.To4())
		case *dns.AAAA:
			addr, _ = netip.AddrFromSlice(r.AAAA.To16())
		}
		if !addr.IsValid() {
			continue
		}
		ttl := min(h.Ttl, maxTTL)
		out = append(out, learned.AddrTTL{Addr: addr.Unmap(), TTL: time.Duration(ttl) * time.Second})
	}
	return out
}

// serviceTargets handles a DNS-SD answer: the instances a PTR answer names
// (or the asked instance itself), their SRV records anywhere in the
// message, and the addresses of the SRV targets. Each target becomes a name
// the app may resolve, learned via the service.
func serviceTargets(q query, resp *dns.Msg, privateOK func(string) bool) ([]learned.Learning, error) {
	instances := map[string]bool{q.name: true}
	for _, rr := range resp.Answer {
		if p, ok := rr.(*dns.PTR); ok && p.Hdr.Class == dns.ClassINET && hostname.CanonicalQuery(p.Hdr.Name) == q.name {
			instances[hostname.CanonicalQuery(p.Ptr)] = true
		}
	}
	all := make([]dns.RR, 0, len(resp.Answer)+len(resp.Extra))
	all = append(append(all, resp.Answer...), resp.Extra...)
	var out []learned.Learning
	seen := map[string]int{}
	for _, rr := range all {
		srv, ok := rr.(*dns.SRV)
		if !ok || srv.Hdr.Class != dns.ClassINET || !instances[hostname.CanonicalQuery(srv.Hdr.Name)] {
			continue
		}
		target := hostname.CanonicalQuery(srv.Target)
		if target == "" || hostname.Validate(target) != nil {
			continue // "." means no service; odd names cannot be host names
		}
		grant := time.Duration(srv.Hdr.Ttl) * time.Second
		if i, dup := seen[target]; dup {
			if grant > out[i].Grant {
				out[i].Grant = grant
			}
			continue
		}
		addrs := addrsOf(all, target, ^uint32(0))
		if err := checkRebind(target, q.via, addrs, privateOK); err != nil {
			return nil, err
		}
		seen[target] = len(out)
		out = append(out, learned.Learning{App: q.app, Name: target, Via: q.via, Ports: q.ports, Addrs: addrs, Grant: grant})
	}
	return out, nil
}

// checkRebind refuses non-public addresses for public names unless the
// name, or the name it came through, is exempt.
func checkRebind(name, via string, addrs []learned.AddrTTL, privateOK func(string) bool) error {
	for _, a := range addrs {
		if isPublicAddr(a.Addr) {
			continue
		}
		if !isPublicName(name) || (via != "" && !isPublicName(via)) || privateOK(name) || (via != "" && privateOK(via)) {
			return nil
		}
		return &rebindError{name: name, addr: a.Addr}
	}
	return nil
}

var (
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork        = netip.MustParsePrefix("0.0.0.0/8")
	siteLocal6         = netip.MustParsePrefix("fec0::/10")
	nat64              = netip.MustParsePrefix("64:ff9b::/96")
	broadcast          = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// isPublicAddr reports whether an address may come back for a public name:
// not private, loopback, link-local, unspecified, multicast, broadcast,
// "this network" or shared (CGNAT) space, also when embedded in IPv6.
func isPublicAddr(a netip.Addr) bool {
	return addrClass(a) == ""
}

func addrClass(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case a.IsUnspecified() || thisNetwork.Contains(a):
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsPrivate() || siteLocal6.Contains(a):
		return "private"
	case sharedAddressSpace.Contains(a):
		return "shared (CGNAT)"
	case a.IsMulticast() || a == broadcast:
		return "multicast or broadcast"
	}
	return ""
}

// nonPublicSuffixes are special-use domains that only ever name things on
// the device or its LAN, so private answers for them are expected.
var nonPublicSuffixes = []string{"localhost", "local", "home.arpa", "internal", "lan", "localdomain"}

// isPublicName reports whether a private answer for name would be a
// rebinding: every name is public except single labels and the special-use
// LAN domains above.
func isPublicName(name string) bool {
	if !strings.Contains(name, ".") {
		return false
	}
	for _, s := range nonPublicSuffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return false
		}
	}
	return true
}
