package dnsproxy

import (
	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// Auditor records refused lookups and what audit mode let through.
// *audit.Log implements it.
type Auditor interface {
	RecordDNS(q audit.DNSQuery)
}

// auditDNS records an answer that audit mode passed and enforce mode would
// have refused. Its addresses are not learned: the firewall's audit rule
// logs the connections to them as would-be-denied, and the audit log names
// them after this lookup.
func (px *Proxy) auditDNS(app, name string, qtype uint16, up *dns.Msg, reason string) {
	if px.audit == nil {
		return
	}
	q := audit.DNSQuery{App: app, Name: name, Type: dns.Type(qtype).String(), Reason: reason}
	if up.Rcode == dns.RcodeSuccess {
		end, chainTTL := followCNAME(up.Answer, name)
		for i, a := range addrsOf(up.Answer, end, chainTTL) {
			if i == 0 || a.TTL < q.TTL {
				q.TTL = a.TTL
			}
			q.Addrs = append(q.Addrs, a.Addr)
		}
	} else {
		q.Reason += " (answer: " + dns.RcodeToString[up.Rcode] + ")"
	}
	px.audit.RecordDNS(q)
}

// recordRefused records a lookup the stub refused, at most auditRate a
// second per app (the rest are counted in the verdict metrics only), so that
// an app asking for random names cannot flood the audit log.
func (px *Proxy) recordRefused(rt *appRuntime, name string, qtype uint16, reason string) {
	if px.audit == nil || !rt.auditLim.Allow() {
		return
	}
	px.audit.RecordDNS(audit.DNSQuery{Verdict: logprefix.Deny, App: rt.name, Name: name, Type: dns.Type(qtype).String(), Reason: reason})
}
