package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Verdict is what an attempt came to.
type Verdict int

const (
	// Denied: pinhole stopped it (NXDOMAIN, refused, rejected or dropped).
	Denied Verdict = iota + 1
	// Allowed: it got through and the other side answered.
	Allowed
	// Failed: neither; something broke that pinhole does not explain.
	Failed
)

func (v Verdict) String() string {
	switch v {
	case Denied:
		return "DENIED"
	case Allowed:
		return "ALLOWED"
	case Failed:
		return "FAILED"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Attempt is one thing the demo tries, with what the policy says of it.
type Attempt struct {
	ID string
	// App is the app that tries (outbound) or serves (inbound); "" is a
	// process that belongs to no app.
	App   string
	Label string
	// Probe is an outbound attempt, run as App inside the device.
	Probe *Probe
	// Inbound is a connection from the internet to App's server.
	Inbound *Inbound
	// Expect and Why are what the policy says and why.
	Expect Verdict
	Why    string
}

// Inbound is a connection from the internet to the device's LAN address.
type Inbound struct {
	Proto string // "tcp" or "udp"
	Port  uint16
}

// Outcome is an attempt and what happened.
type Outcome struct {
	Attempt
	Got Verdict
	// Summary says in a few words what happened ("DNS answered NXDOMAIN").
	Summary string
	// Evidence are the steps, one line each.
	Evidence []string
	// Audit are pinhole's audit records about the attempt, in words.
	Audit []string
	// Took is how long the step that decided took.
	Took time.Duration
}

// Match reports whether what happened is what the policy says.
func (o Outcome) Match() bool { return o.Got == o.Expect }

// The sample apps the demo needs.
const (
	demoTelemetry = "telemetry"
	demoWebfetch  = "webfetch"
	demoIntruder  = "intruder"
)

// inboundTimeout is how long an inbound attempt waits: pinhole drops
// unrequested inbound packets without an answer.
const inboundTimeout = time.Second

// SampleAttempts lists the demo's attempts for the sample apps, each with
// the verdict the compiled policy gives it.
func SampleAttempts(p *Plan, pol *policy.Policy) ([]Attempt, error) {
	for _, n := range []string{demoTelemetry, demoWebfetch, demoIntruder} {
		if pol.App(n) == nil {
			return nil, fmt.Errorf("the demo runs the sample apps (telemetry, webfetch, intruder); this lab has %s", strings.Join(p.AppNames(), ", "))
		}
	}
	host := func(name string) Host {
		h, _ := Lookup(p.Zone, name)
		return h
	}
	api := host("api.contoso.example")
	ntp := host("prod.time.sphere.azure.net")
	resolver := netip.AddrPortFrom(ResolverV4, resolverPort)
	google := netip.AddrPortFrom(netip.MustParseAddr("8.8.8.8"), 53)
	e := expecter{pol: pol}

	out := []Attempt{
		e.name("telemetry/hub", demoTelemetry, "contoso-hub.azure-devices.net", 8883, "MQTT over TLS", &Probe{Talk: "mqtts"}),
		e.name("telemetry/dps", demoTelemetry, "global.azure-devices-provisioning.net", 443, "HTTPS", &Probe{Talk: "https", Path: "/"}),
		e.name("telemetry/conncheck", demoTelemetry, "www.msftconnecttest.com", 80, "HTTP", &Probe{Talk: "http", Path: "/connecttest.txt"}),

		e.name("webfetch/api", demoWebfetch, "api.contoso.example", 443, "HTTPS", &Probe{Talk: "https", Path: "/v1/items"}),
		e.name("webfetch/api-v6", demoWebfetch, "api.contoso.example", 443, "HTTPS over IPv6", &Probe{Talk: "https", Path: "/v1/items", IPv6: true}),
		e.name("webfetch/cdn", demoWebfetch, "img.contoso-cdn.example", 443, "HTTPS through a CDN's CNAME chain", &Probe{Talk: "https", Path: "/logo.png"}),
		e.name("webfetch/cdn-apex", demoWebfetch, "contoso-cdn.example", 443, "HTTPS", &Probe{Talk: "https", Path: "/"}),
		e.addr("webfetch/lan", demoWebfetch, LANServer, 80, "HTTP to a LAN server by address", &Probe{Talk: "http", Path: "/"}, ""),
		e.inbound("webfetch/in-8080", demoWebfetch, "tcp", 8080),
		e.inbound("webfetch/in-8081", demoWebfetch, "tcp", 8081),

		e.name("intruder/status", demoIntruder, "status.contoso.example", 443, "HTTPS", &Probe{Talk: "https", Path: "/"}),
		e.name("intruder/api", demoIntruder, "api.contoso.example", 443, "HTTPS", &Probe{Talk: "https", Path: "/"}),
		e.addr("intruder/api-addr", demoIntruder, api.V4, 443, "HTTPS straight to api.contoso.example's address", &Probe{Talk: "https"}, "api.contoso.example"),
		e.addr("intruder/api-addr-v6", demoIntruder, api.V6, 443, "HTTPS straight to api.contoso.example's IPv6 address", &Probe{Talk: "https"}, "api.contoso.example"),
		e.dnsAt("intruder/dns-8.8.8.8", demoIntruder, "status.contoso.example", google, false),
		e.dnsAt("intruder/dns-8.8.8.8-tcp", demoIntruder, "api.contoso.example", google, true),
		e.addr("intruder/ntp", demoIntruder, ntp.V4, 123, "NTP to prod.time.sphere.azure.net's address", &Probe{Proto: "udp", Talk: "ntp"}, "prod.time.sphere.azure.net"),
		e.inbound("intruder/in-7000", demoIntruder, "udp", 7000),

		e.name("unmanaged/conncheck", "", "www.msftconnecttest.com", 80, "HTTP", &Probe{Talk: "http", Path: "/connecttest.txt"}),
	}
	for i := range out {
		if pr := out[i].Probe; pr != nil && !pr.Server.IsValid() {
			pr.Server = resolver
		}
	}
	return out, nil
}

// expecter works out what the policy says of an attempt, and why, in words
// a network administrator reads.
type expecter struct {
	pol *policy.Policy
}

func appLabel(app string) string {
	if app == "" {
		return "a process of no app"
	}
	return app
}

func (e expecter) name(id, app, name string, port uint16, what string, pr *Probe) Attempt {
	pr.Name, pr.Port = name, port
	proto := policy.TCP
	if pr.Proto == "udp" {
		proto = policy.UDP
	}
	a := Attempt{ID: id, App: app, Probe: pr, Label: fmt.Sprintf("%s -> %s:%d, %s", appLabel(app), name, port, what)}
	a.Expect, a.Why = e.forName(app, name, proto, port)
	return a
}

func (e expecter) forName(app, name string, proto policy.Proto, port uint16) (Verdict, string) {
	if app == "" {
		return e.unmanaged()
	}
	pa := e.pol.App(app)
	m, ok := pa.MatchName(name)
	if !ok {
		why := fmt.Sprintf("%s's manifest does not list %s", app, name)
		if ls := listed(pa); ls != "" {
			why += " (it lists " + ls + ")"
		}
		if e.pol.System != nil && e.pol.System.AllowsName(name) {
			why += "; only pinholed itself may reach it (the device's own endpoints)"
		}
		return Denied, why
	}
	rule := pa.Hosts[m.Rules[0]]
	if port != 0 && !m.Ports.Any() && !slices.Contains(m.Ports, policy.PortSpec{Proto: proto, Port: port}) {
		return Denied, fmt.Sprintf("%s's manifest lists %s only on %v", app, rule.Pattern, m.Ports)
	}
	if rule.Pattern.Kind == hostname.Wildcard {
		return Allowed, fmt.Sprintf("%s matches %s in %s's manifest", name, rule.Pattern, app)
	}
	return Allowed, fmt.Sprintf("%s's manifest lists %s", app, rule.Pattern)
}

func (e expecter) unmanaged() (Verdict, string) {
	if e.pol.Unmanaged == policy.UnmanagedAllow {
		return Allowed, "it belongs to no app, and the config says unmanaged: allow"
	}
	return Denied, "it belongs to no app, and the config says unmanaged: deny"
}

// listed names what an app's manifest allows, briefly.
func listed(pa *policy.App) string {
	var out []string
	for _, h := range pa.Hosts {
		out = append(out, h.Pattern.String())
	}
	for _, a := range pa.Addrs {
		out = append(out, a.Addr.String())
	}
	if len(out) > 4 {
		out = append(out[:4], fmt.Sprintf("and %d more", len(out)-4))
	}
	return strings.Join(out, ", ")
}

// addr is an attempt straight to an address; owner, if set, is the name
// the address belongs to.
func (e expecter) addr(id, app string, addr netip.Addr, port uint16, what string, pr *Probe, owner string) Attempt {
	pr.Addr, pr.Port = addr, port
	proto := policy.TCP
	if pr.Proto == "udp" {
		proto = policy.UDP
	}
	a := Attempt{ID: id, App: app, Probe: pr, Label: fmt.Sprintf("%s -> %s, %s", appLabel(app), netip.AddrPortFrom(addr, port), what)}
	if app == "" {
		a.Expect, a.Why = e.unmanaged()
		return a
	}
	pa := e.pol.App(app)
	for _, r := range pa.Addrs {
		if r.Addr == addr && (r.Ports.Any() || slices.Contains(r.Ports, policy.PortSpec{Proto: proto, Port: port})) {
			a.Expect, a.Why = Allowed, fmt.Sprintf("%s's manifest lists the address %s", app, addr)
			return a
		}
	}
	a.Expect = Denied
	if owner != "" {
		if v, _ := e.forName(app, owner, proto, port); v == Denied {
			a.Why = fmt.Sprintf("%s never looked up %s (it may not), so its address is not open to it; its manifest lists no such address", app, owner)
			return a
		}
	}
	a.Why = fmt.Sprintf("no name %s looked up has this address, and its manifest lists no such address", app)
	return a
}

// dnsAt is a lookup at a DNS server of the app's choosing.
func (e expecter) dnsAt(id, app, name string, server netip.AddrPort, overTCP bool) Attempt {
	how := "UDP"
	if overTCP {
		how = "TCP"
	}
	a := Attempt{ID: id, App: app, Probe: &Probe{Name: name, Server: server, DNSOverTCP: overTCP},
		Label: fmt.Sprintf("%s -> DNS server %s over %s, asking for %s", appLabel(app), server.Addr(), how, name)}
	v, why := e.forName(app, name, 0, 0)
	a.Expect = v
	a.Why = fmt.Sprintf("every DNS query of %s goes to its own pinhole stub, whatever server it names; %s", app, why)
	return a
}

func (e expecter) inbound(id, app, proto string, port uint16) Attempt {
	a := Attempt{ID: id, App: app, Inbound: &Inbound{Proto: proto, Port: port},
		Label: fmt.Sprintf("internet -> %s (%s's server) %s port %d", DeviceLANv4.Addr(), app, strings.ToUpper(proto), port)}
	pa := e.pol.App(app)
	ports := pa.TCPServerPorts
	if proto == "udp" {
		ports = pa.UDPServerPorts
	}
	what := strings.ToUpper(proto) + " server ports"
	switch {
	case slices.Contains(ports, port):
		a.Expect, a.Why = Allowed, fmt.Sprintf("%s's manifest lists %s %d", app, what, port)
	case len(ports) == 0:
		a.Expect, a.Why = Denied, fmt.Sprintf("%s's manifest lists no %s", app, what)
	default:
		a.Expect, a.Why = Denied, fmt.Sprintf("%s's manifest lists only %s %s", app, what, joinPorts(ports))
	}
	return a
}

func joinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// Judge turns a probe's result into an outcome.
func Judge(a Attempt, r ProbeResult) Outcome {
	o := Outcome{Attempt: a}
	if d := r.DNS; d != nil {
		o.Evidence = append(o.Evidence, dnsLine(a.Probe.Name, d))
		o.Took = d.Took
		switch {
		case d.Err != "":
			o.Got, o.Summary = deniedOrFailed(d.Errno, "the DNS query")
			return o
		case d.Rcode == "NXDOMAIN":
			o.Got, o.Summary = Denied, "DNS answered NXDOMAIN"
			if elsewhere(a.Probe) {
				o.Summary = fmt.Sprintf("its pinhole stub answered NXDOMAIN anyway (no DNS server exists at %s in the lab)", a.Probe.Server.Addr())
			}
			if d.EDE == "" {
				o.Got, o.Summary = Failed, "DNS answered NXDOMAIN, but not from pinhole (no extended error)"
			}
			return o
		case d.Rcode != "NOERROR":
			o.Got, o.Summary = Failed, "DNS answered "+d.Rcode
			return o
		case len(d.Addrs) == 0:
			o.Got, o.Summary = Failed, "DNS answered without an address"
			return o
		}
		if a.Probe.Port == 0 {
			o.Got, o.Summary = Allowed, "answered"
			if elsewhere(a.Probe) {
				o.Summary = fmt.Sprintf("answered by %s's pinhole stub anyway (no DNS server exists at %s in the lab)", appLabel(a.App), a.Probe.Server.Addr())
			}
			return o
		}
	}
	c := r.Conn
	if c == nil {
		o.Got, o.Summary = Failed, "no address of the right family to connect to"
		return o
	}
	proto := strings.ToUpper(a.Probe.Proto)
	if proto == "" {
		proto = "TCP"
	}
	o.Took = c.Took
	if !c.OK {
		o.Got, o.Summary = deniedOrFailed(c.Errno, "the connection")
		o.Evidence = append(o.Evidence, fmt.Sprintf("%s %s: %s in %s", proto, c.Addr, errText(c.Errno, c.Err), ms(c.Took)))
		return o
	}
	if proto == "TCP" {
		o.Evidence = append(o.Evidence, fmt.Sprintf("TCP %s: connected in %s", c.Addr, ms(c.Took)))
	}
	t := r.Talk
	if t == nil {
		o.Got, o.Summary = Allowed, "connected"
		return o
	}
	if !t.OK {
		o.Took = t.Took
		if proto == "UDP" {
			o.Got, o.Summary = deniedOrFailed(t.Errno, "the datagram")
			o.Evidence = append(o.Evidence, fmt.Sprintf("UDP %s: %s in %s", c.Addr, errText(t.Errno, t.Err), ms(t.Took)))
			return o
		}
		o.Got, o.Summary = Failed, "connected, but "+t.Err
		o.Evidence = append(o.Evidence, "then: "+t.Err)
		return o
	}
	o.Got, o.Summary = Allowed, "answered"
	o.Evidence = append(o.Evidence, fmt.Sprintf("%s (%s)", t.Detail, ms(t.Took)))
	return o
}

// elsewhere reports whether the probe asks a DNS server other than the
// lab's own, which exists only as a redirect target.
func elsewhere(pr *Probe) bool {
	return pr.Server.IsValid() && pr.Server.Addr() != ResolverV4 && pr.Server.Addr() != ResolverV6
}

// JudgeInbound turns an inbound connection's result into an outcome.
func JudgeInbound(a Attempt, r StepResult) Outcome {
	o := Outcome{Attempt: a}
	target := fmt.Sprintf("%s %s", strings.ToUpper(a.Inbound.Proto), r.Addr)
	switch {
	case r.OK:
		o.Got, o.Summary = Allowed, "answered"
		o.Evidence = append(o.Evidence, fmt.Sprintf("%s: %s (%s)", target, strings.TrimSpace(r.Detail), ms(r.Took)))
	case r.Errno == "timeout":
		o.Got, o.Summary = Denied, fmt.Sprintf("no answer within %s", inboundTimeout)
		o.Evidence = append(o.Evidence, fmt.Sprintf("%s: no answer within %s: pinhole drops unrequested inbound packets without a word", target, inboundTimeout))
	default:
		o.Got, o.Summary = Failed, errText(r.Errno, r.Err)
		o.Evidence = append(o.Evidence, fmt.Sprintf("%s: %s", target, errText(r.Errno, r.Err)))
	}
	return o
}

// deniedOrFailed classifies a failed step: the ways pinhole stops traffic
// are denials, anything else a failure.
func deniedOrFailed(errno, what string) (Verdict, string) {
	switch errno {
	case "ECONNREFUSED":
		return Denied, what + " was refused"
	case "EPERM":
		return Denied, what + " was rejected before it left the device"
	case "EACCES", "EHOSTUNREACH", "ENETUNREACH":
		return Denied, what + " was rejected (administratively prohibited)"
	case "timeout":
		return Denied, what + " got no answer"
	}
	return Failed, what + " failed"
}

// errText explains an error class in words, with the system's message.
func errText(errno, err string) string {
	switch errno {
	case "ECONNREFUSED":
		return "connection refused"
	case "EPERM":
		return "operation not permitted: the kernel's firewall rejected the packet as it was sent"
	case "EACCES", "EHOSTUNREACH", "ENETUNREACH":
		return "rejected with ICMP administratively prohibited (" + errno + ")"
	case "timeout":
		return "no answer"
	}
	return err
}

func dnsLine(name string, d *DNSResult) string {
	if d.Err != "" {
		return fmt.Sprintf("DNS %s for %s: %s in %s", d.Server, name, errText(d.Errno, d.Err), ms(d.Took))
	}
	if d.Rcode != "NOERROR" {
		s := fmt.Sprintf("DNS %s for %s: %s in %s", d.Server, name, d.Rcode, ms(d.Took))
		if d.EDE != "" {
			s += fmt.Sprintf(" (%q)", d.EDE)
		}
		return s
	}
	chain := append([]string{name}, d.Chain...)
	addrs := make([]string, len(d.Addrs))
	for i, a := range d.Addrs {
		addrs[i] = a.String()
	}
	return fmt.Sprintf("DNS %s: %s -> %s in %s", d.Server, strings.Join(chain, " -> CNAME "), strings.Join(addrs, ", "), ms(d.Took))
}

// ms prints a duration in milliseconds, with a decimal under 10 ms.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	if f < 10 {
		return strconv.FormatFloat(f, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(f, 'f', 0, 64) + " ms"
}
