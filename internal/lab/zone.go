package lab

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

// Host is one name of the lab's internet and where it points.
type Host struct {
	// Name is a host name, or "*.domain" for every name below domain (and
	// domain itself).
	Name string `json:"name"`
	// Chain are the CNAMEs from Name to the name that has the addresses, as
	// CDNs answer.
	Chain []string   `json:"chain,omitempty"`
	V4    netip.Addr `json:"v4"`
	V6    netip.Addr `json:"v6"`
	// Note says why the lab serves the name.
	Note string `json:"note"`
}

// Wildcard reports whether h stands for a whole domain.
func (h Host) Wildcard() bool { return strings.HasPrefix(h.Name, "*.") }

// Target is the name that holds the addresses: the end of the chain.
func (h Host) Target() string {
	if len(h.Chain) > 0 {
		return h.Chain[len(h.Chain)-1]
	}
	return h.Name
}

// sampleHosts are the names the sample apps use, with CNAME chains where the
// real internet has them. They come first so that their addresses do not
// move when the catalog grows.
var sampleHosts = []Host{
	{Name: "contoso-hub.azure-devices.net", Chain: []string{"ihsu-prod-lab-001.cloudapp.net"}, Note: "the sample IoT hub (telemetry)"},
	{Name: "api.contoso.example", Note: "webfetch's API"},
	{Name: "img.contoso-cdn.example", Chain: []string{"contoso.edgekey.example", "e7.a.akamaiedge.example"}, Note: "a CDN host under webfetch's *.contoso-cdn.example"},
	{Name: "contoso-cdn.example", Note: "the domain of webfetch's wildcard, which the wildcard does not cover"},
	{Name: "status.contoso.example", Note: "intruder's status page"},
	{Name: "prod.update.sphere.azure.net", Chain: []string{"prod-update-sphere.azureedge.net", "prod-update-sphere.ec.azureedge.net"}, Note: "catalog; a CDN chain as in real life"},
}

// noteManifest is the note of names that come from the apps' manifests.
const noteManifest = "an app's manifest"

// BuildZone lists the lab internet's names: the sample hosts, every host of
// the catalog profile (endpoints, time servers, connection check), and the
// names of the apps' manifests (exact names, and wildcards as whole
// domains). Each gets its own IPv4 and IPv6 address.
func BuildZone(prof *catalog.Profile, appPatterns []hostname.Pattern) ([]Host, error) {
	var z zoneBuilder
	for _, h := range sampleHosts {
		z.add(h)
	}
	if prof != nil {
		note := "catalog " + prof.Name
		for _, ep := range prof.Endpoints {
			for _, n := range ep.Hosts {
				z.addName(n, note)
			}
		}
		for _, n := range prof.NTPServers {
			z.addName(n, note+" (time)")
		}
		if prof.ConnectivityURL != "" {
			if u, err := url.Parse(prof.ConnectivityURL); err == nil {
				z.addName(u.Hostname(), note+" (connection check)")
			}
		}
	}
	for _, p := range appPatterns {
		switch p.Kind {
		case hostname.Exact:
			z.addName(p.Name, noteManifest)
		case hostname.Wildcard:
			if !z.covers(p.Name) {
				z.add(Host{Name: "*." + p.Name, Note: "an app's manifest (every name below " + p.Name + ")"})
			}
		}
	}
	if len(z.hosts) > 250*250 {
		return nil, fmt.Errorf("the lab serves at most %d names, not %d", 250*250, len(z.hosts))
	}
	for i := range z.hosts {
		z.hosts[i].V4, z.hosts[i].V6 = hostAddrs(i)
	}
	return z.hosts, nil
}

type zoneBuilder struct {
	hosts []Host
	seen  map[string]bool
}

func (z *zoneBuilder) add(h Host) {
	if z.seen == nil {
		z.seen = map[string]bool{}
	}
	if z.seen[h.Name] {
		return
	}
	z.seen[h.Name] = true
	for _, c := range h.Chain {
		z.seen[c] = true
	}
	z.hosts = append(z.hosts, h)
}

// addName adds a plain host name; addresses and invalid names are skipped.
func (z *zoneBuilder) addName(name, note string) {
	if _, err := netip.ParseAddr(name); err == nil {
		return
	}
	p, err := hostname.ParsePattern(name)
	if err != nil || p.Kind != hostname.Exact {
		return
	}
	z.add(Host{Name: p.Name, Note: note})
}

// covers reports whether the zone already has domain or a name below it.
func (z *zoneBuilder) covers(domain string) bool {
	return slices.ContainsFunc(z.hosts, func(h Host) bool {
		n := strings.TrimPrefix(h.Name, "*.")
		return n == domain || strings.HasSuffix(n, "."+domain)
	})
}

// hostAddrs gives zone entry i its addresses: 198.18.1.1, 198.18.1.2, ...,
// 198.18.1.250, 198.18.2.1, ... and 2001:db8:1::1, 2001:db8:1::2, ...
func hostAddrs(i int) (netip.Addr, netip.Addr) {
	v4 := firstHostV4.As4()
	v4[2] += byte(i / 250)
	v4[3] = byte(1 + i%250)
	v6 := firstHostV6.As16()
	n := uint16(i + 1)
	v6[14], v6[15] = byte(n>>8), byte(n)
	return netip.AddrFrom4(v4), netip.AddrFrom16(v6)
}

// ZoneNames lists every name of the zone, CNAMEs included, for the
// certificate: wildcards as "*.domain" plus the domain itself.
func ZoneNames(zone []Host) []string {
	var out []string
	for _, h := range zone {
		out = append(out, h.Name)
		if h.Wildcard() {
			out = append(out, strings.TrimPrefix(h.Name, "*."))
		}
		out = append(out, h.Chain...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Lookup returns the zone entry that answers name.
func Lookup(zone []Host, name string) (Host, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, h := range zone {
		if h.Name == name {
			return h, true
		}
	}
	for _, h := range zone {
		if d, ok := strings.CutPrefix(h.Name, "*."); ok && (name == d || strings.HasSuffix(name, "."+d)) {
			return h, true
		}
	}
	return Host{}, false
}
