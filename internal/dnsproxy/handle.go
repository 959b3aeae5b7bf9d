package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func canonical(name string) string { return hostname.CanonicalQuery(name) }

// answer decides one query of rt's app and returns the message to send back
// (nil: send nothing) and the verdict it counted.
func (px *Proxy) answer(ctx context.Context, rt *appRuntime, req *dns.Msg, tcp bool) (*dns.Msg, Verdict) {
	resp, v := px.decide(ctx, rt, req, tcp)
	rt.counts[v].Add(1)
	return resp, v
}

func (px *Proxy) decide(ctx context.Context, rt *appRuntime, req *dns.Msg, tcp bool) (*dns.Msg, Verdict) {
	if req.Response {
		return nil, Invalid
	}
	if req.Opcode != dns.OpcodeQuery {
		return refuse(req, dns.RcodeNotImplemented, 0, ""), Invalid
	}
	if len(req.Question) != 1 {
		return refuse(req, dns.RcodeFormatError, 0, ""), Invalid
	}
	q := req.Question[0]
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return refuse(req, dns.RcodeNotImplemented, 0, ""), Invalid
	}
	name := canonical(q.Name)
	pol := px.pol.Load()
	app := pol.App(rt.name)

	qry, ok := px.match(app, name, q)
	auditOnly := false // audit mode: forward, but open nothing
	if !ok {
		if pol.Mode != policy.ModeAudit || app == nil || name == "" || q.Qclass != dns.ClassINET {
			px.logLimited(rt, slog.LevelInfo, "dns query blocked", "name", name, "type", dns.Type(q.Qtype).String())
			if app != nil && name != "" {
				px.recordRefused(rt, name, q.Qtype, "blocked: not in the app's AllowedConnections (answered NXDOMAIN)")
			}
			return refuse(req, dns.RcodeNameError, dns.ExtendedErrorCodeBlocked,
				fmt.Sprintf("pinhole: app %s may not resolve %s (not in its AllowedConnections)", rt.name, printable(name))), Blocked
		}
		auditOnly = true
		qry = query{app: app.Name, name: name, qtype: q.Qtype}
	}

	if !rt.limiter.Allow() {
		px.logLimited(rt, slog.LevelWarn, "dns query over the rate limit", "name", name)
		return refuse(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, "pinhole: app "+rt.name+" is over its DNS rate limit"), RateLimited
	}
	sem := *rt.sem.Load()
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
	default:
		px.logLimited(rt, slog.LevelWarn, "dns query over the in-flight cap", "name", name)
		return refuse(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeOther, "pinhole: app "+rt.name+" has too many DNS queries in flight"), RateLimited
	}

	if px.exch == nil && len(px.fwd.Load().ups) == 0 {
		px.logLimited(rt, slog.LevelWarn, "dns query without upstream servers", "name", name, "resolv_conf_problem", pol.DNS.ResolvConfProblem)
		return refuse(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeNotReady, "pinhole: no upstream DNS servers (resolv.conf lists none yet)"), NoUpstream
	}

	ctx, cancel := context.WithTimeout(ctx, maxDeadline)
	defer cancel()
	up, err := px.exchange(ctx, upstreamQuery(req), tcp)
	if err != nil {
		px.logLimited(rt, slog.LevelWarn, "dns upstream failed", "name", name, "err", err)
		return refuse(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeNetworkError, "pinhole: no upstream DNS server answered"), UpstreamError
	}

	if auditOnly {
		px.logLimited(rt, slog.LevelInfo, "dns query answered in audit mode (enforce mode would block it)", "name", name, "type", dns.Type(q.Qtype).String())
		px.auditDNS(rt.name, name, q.Qtype, up, "would be blocked: not in the app's AllowedConnections")
		return reply(req, up), Audit
	}
	ls, err := extract(qry, up, func(n string) bool { return privateAllowed(pol, n) })
	if err != nil {
		var rb *rebindError
		if errors.As(err, &rb) && pol.Mode == policy.ModeAudit {
			px.logLimited(rt, slog.LevelInfo, "dns answer passed in audit mode (enforce mode would refuse it)", "name", name, "addr", rb.addr, "class", addrClass(rb.addr))
			px.auditDNS(rt.name, name, q.Qtype, up, "would be refused by rebinding protection: "+rb.Error()+" (allow it with dns.allow_private)")
			return reply(req, up), Audit
		}
		if errors.As(err, &rb) {
			px.logLimited(rt, slog.LevelWarn, "dns answer refused by rebinding protection", "name", name, "addr", rb.addr, "class", addrClass(rb.addr))
			px.recordRefused(rt, name, q.Qtype, "refused by rebinding protection: "+rb.Error()+" (answered SERVFAIL; allow it with dns.allow_private)")
			return refuse(req, dns.RcodeServerFailure, dns.ExtendedErrorCodeBlocked,
				"pinhole: rebinding protection: "+printable(rb.Error())+" (allow it with dns.allow_private)"), Rebinding
		}
		return refuse(req, dns.RcodeServerFailure, 0, ""), UpstreamError
	}
	if len(ls) > 0 {
		px.insert(px.store.Learn(ls...))
	}
	return reply(req, up), Allowed
}

// match decides whether app may resolve name, directly or as a name an
// earlier DNS-SD answer allowed, and with which ports.
func (px *Proxy) match(app *policy.App, name string, q dns.Question) (query, bool) {
	if app == nil || name == "" || q.Qclass != dns.ClassINET {
		return query{}, false
	}
	qry := query{app: app.Name, name: name, qtype: q.Qtype}
	if m, ok := app.MatchName(name); ok {
		qry.ports = m.Ports
		for _, i := range m.Rules {
			if p := app.Hosts[i].Pattern; p.Kind == hostname.Service {
				qry.service = true
				qry.via = p.Name
				break
			}
		}
		return qry, true
	}
	via, ok := px.store.Granted(app.Name, name)
	if !ok {
		return query{}, false
	}
	m, ok := app.MatchName(via)
	if !ok {
		return query{}, false
	}
	qry.via, qry.ports = via, m.Ports
	return qry, true
}

func privateAllowed(p *policy.Policy, name string) bool {
	for _, pat := range p.DNS.PrivateAllowed {
		if pat.Match(name) {
			return true
		}
	}
	return false
}

// insert hands elements to the group commit and waits for the kernel's
// acknowledgement, at most the insert timeout.
func (px *Proxy) insert(elems []learned.Element) {
	if len(elems) == 0 {
		if px.store.HasReleased() {
			// Nothing to insert, but a cap evicted entries: an empty batch
			// has the commit goroutine revoke them. No need to wait.
			px.commit.submit(nil)
		}
		return
	}
	start := time.Now()
	b, err := px.commit.submit(elems)
	if err != nil {
		px.insertOverflows.Add(1)
		return
	}
	t := time.NewTimer(durOr(px.pol.Load().DNS.InsertTimeout, DefaultInsertTimeout))
	select {
	case <-b.done:
		t.Stop()
	case <-t.C:
		px.insertTimeouts.Add(1)
		px.log.Warn("answer released before the kernel acknowledged its set elements", "elements", len(elems))
	}
	px.hold.observe(time.Since(start))
}

// upstreamQuery is the question as it goes upstream: the app's flags, our
// own EDNS0 (buffer size, DO copied), none of the app's EDNS options.
func upstreamQuery(req *dns.Msg) *dns.Msg {
	up := new(dns.Msg)
	up.Opcode = dns.OpcodeQuery
	up.RecursionDesired = req.RecursionDesired
	up.CheckingDisabled = req.CheckingDisabled
	up.AuthenticatedData = req.AuthenticatedData
	up.Question = []dns.Question{req.Question[0]}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	up.SetEdns0(udpSize, do)
	return up
}

// reply is the upstream answer re-addressed to the app: its ID and
// question, the upstream's records, and EDNS0 only if the app used it.
func reply(req, up *dns.Msg) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(req)
	r.Compress = true
	r.Rcode = up.Rcode
	if r.Rcode == dns.RcodeRefused {
		r.Rcode = dns.RcodeServerFailure // REFUSED would end musl's search list
	}
	r.Authoritative = up.Authoritative
	r.RecursionAvailable = true
	r.Answer, r.Ns = up.Answer, up.Ns
	for _, rr := range up.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			r.Extra = append(r.Extra, rr)
		}
	}
	opt := req.IsEdns0()
	if opt == nil {
		if r.Rcode > 0xF { // an extended rcode needs EDNS0 to be said
			r.Rcode = dns.RcodeServerFailure
		}
		return r
	}
	r.AuthenticatedData = up.AuthenticatedData && (opt.Do() || req.AuthenticatedData)
	o := newOPT(opt.Do())
	if uo := up.IsEdns0(); uo != nil {
		for _, e := range uo.Option {
			if ede, ok := e.(*dns.EDNS0_EDE); ok {
				o.Option = append(o.Option, ede)
			}
		}
	}
	r.Extra = append(r.Extra, o)
	return r
}

func newOPT(do bool) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(udpSize)
	if do {
		o.SetDo()
	}
	return o
}

// refuse answers req with rcode and, when the app used EDNS0 and code is
// not zero, an Extended DNS Error (RFC 8914) saying why.
func refuse(req *dns.Msg, rcode int, code uint16, text string) *dns.Msg {
	r := new(dns.Msg)
	r.SetRcode(req, rcode)
	r.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		o := newOPT(opt.Do())
		if code != 0 || text != "" {
			o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
		}
		r.Extra = append(r.Extra, o)
	}
	return r
}

// printable keeps EDE text and logs to printable ASCII.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// logLimited logs at most about one line a second per app (bursts of ten),
// and says how many it skipped.
func (px *Proxy) logLimited(rt *appRuntime, level slog.Level, msg string, args ...any) {
	if !rt.logLim.Allow() {
		rt.dropped.Add(1)
		return
	}
	args = append(args, "app", rt.name)
	if n := rt.dropped.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	px.log.Log(context.Background(), level, msg, args...)
}
