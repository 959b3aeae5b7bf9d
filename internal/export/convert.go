package export

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// SystemOwner names pinholed's own rules in the export.
const SystemOwner = "pinholed"

// FromProfile gives the rules of a catalog profile: what pinholed itself
// reaches.
func FromProfile(prof *catalog.Profile) ([]Rule, error) {
	var out []Rule
	for _, ep := range prof.Endpoints {
		r := Rule{
			Owner: SystemOwner,
			Addrs: ep.Addrs,
			Ports: policy.Ports{{Proto: proto(ep.Transport), Port: ep.Port}},
			Why:   ep.Purpose,
		}
		if ep.Kind == catalog.KindDNSServers {
			r.DNSServers = true
		}
		for _, h := range ep.Hosts {
			pat, err := hostname.ParsePattern(h)
			if err != nil {
				return nil, fmt.Errorf("profile %s: host %q: %w", prof.Name, h, err)
			}
			r.Hosts = append(r.Hosts, pat)
		}
		out = append(out, r)
	}
	return out, nil
}

func proto(t catalog.Transport) policy.Proto {
	if t == catalog.UDP {
		return policy.UDP
	}
	return policy.TCP
}

// FromPolicy gives the rules of a compiled policy: pinholed's (with the
// purposes of prof's catalog entries) and every app's. When upstreamsKnown
// is false the policy's DNS upstreams came from the resolv.conf of the
// machine that compiled it, not from the device: they are left out and the
// DNS rule asks for the devices' servers instead.
func FromPolicy(p *policy.Policy, prof *catalog.Profile, upstreamsKnown bool) []Rule {
	purpose := map[string]string{}
	for _, ep := range prof.Endpoints {
		for _, d := range ep.Destinations() {
			purpose[fmt.Sprintf("%s %s/%d", d, proto(ep.Transport), ep.Port)] = ep.Purpose
		}
	}
	why := func(dest, source string, ports policy.Ports) string {
		if strings.HasPrefix(source, "profile ") && len(ports) > 0 {
			if w, ok := purpose[dest+" "+ports[0].String()]; ok {
				return w
			}
		}
		return source
	}
	var out []Rule
	if s := p.System; s != nil {
		for _, h := range s.Hosts {
			out = append(out, Rule{Owner: SystemOwner, Hosts: []hostname.Pattern{h.Pattern}, Ports: h.Ports, Why: why(h.Pattern.String(), h.Source, h.Ports)})
		}
		for _, a := range s.Addrs {
			if a.Source == policy.SourceUpstream && !upstreamsKnown {
				continue
			}
			out = append(out, Rule{Owner: SystemOwner, Addrs: []netip.Addr{a.Addr}, Ports: a.Ports, Why: why(a.Addr.String(), a.Source, a.Ports)})
		}
		if !upstreamsKnown {
			out = append(out, Rule{Owner: SystemOwner, Ports: policy.BothProtocols(53), Why: "DNS servers", DNSServers: true})
		}
	}
	for _, a := range p.Apps {
		for _, h := range a.Hosts {
			out = append(out, Rule{Owner: a.Name, Hosts: []hostname.Pattern{h.Pattern}, Ports: h.Ports, Why: h.Source})
		}
		for _, ad := range a.Addrs {
			out = append(out, Rule{Owner: a.Name, Addrs: []netip.Addr{ad.Addr}, Ports: ad.Ports, Why: ad.Source})
		}
	}
	return out
}

// ServerNotes says which server ports the apps declare: the export opens
// nothing towards the devices, which an administrator has to know.
func ServerNotes(p *policy.Policy) []string {
	var out []string
	for _, a := range p.Apps {
		for _, set := range []struct {
			proto string
			ports []uint16
		}{{"TCP", a.TCPServerPorts}, {"UDP", a.UDPServerPorts}} {
			for _, port := range set.ports {
				out = append(out, fmt.Sprintf("app %s serves %s port %d: connections to the devices are not opened here", a.Name, set.proto, port))
			}
		}
	}
	return out
}
