package audit

import (
	"net/netip"
	"slices"
	"time"

	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// Kind tells what a Record is about: a logged packet (the zero value, for
// records written before kinds existed) or a DNS lookup.
type Kind string

const (
	KindPacket Kind = ""
	KindDNS    Kind = "dns"
)

// DNSDirection is the direction StatKey counts DNS records under.
const DNSDirection logprefix.Direction = "dns"

// DNSQuery is a lookup the DNS stub refused (a name the app may not
// resolve, an answer rebinding protection refuses), or one that audit mode
// answered although enforce mode would have refused it.
type DNSQuery struct {
	// Verdict is logprefix.Deny for a lookup that was refused, and
	// logprefix.Audit (or empty) for one audit mode let through.
	Verdict logprefix.Verdict
	App     string
	// Name is the canonical name asked, Type its query type ("A").
	Name string
	Type string
	// Addrs are the addresses of the answer, TTL its smallest TTL.
	Addrs []netip.Addr
	TTL   time.Duration
	// Reason says what enforce mode did, or would have done, and why.
	Reason string
}

// Bounds of the names RecordDNS remembers for later connection records.
const (
	maxDNSNames = 4096
	// minDNSNameLife keeps a name at least this long, whatever its TTL:
	// apps keep using addresses past short TTLs, and the name is a hint.
	minDNSNameLife = 10 * time.Minute
)

type dnsKey struct {
	app  string
	addr netip.Addr
}

type dnsName struct {
	name    string
	expires time.Time
}

// RecordDNS records a refused lookup, or one that audit mode let through.
// Repeats of the same app and name within the aggregation window raise the
// count. An answer's addresses are remembered with the name, so that the
// records of the connections that follow (which the firewall logs, as the
// addresses are not opened) name the host.
func (l *Log) RecordDNS(q DNSQuery) {
	now := l.opts.Clock.Now()
	verdict := q.Verdict
	if verdict == "" {
		verdict = logprefix.Audit
	}
	rec := Record{
		Kind:    KindDNS,
		First:   now.Round(0),
		Last:    now.Round(0),
		Count:   1,
		App:     q.App,
		Verdict: verdict,
		Name:    q.Name,
		QType:   q.Type,
		Addrs:   slices.Clone(q.Addrs[:min(len(q.Addrs), maxAddrs)]),
		Reason:  q.Reason,
	}
	sk := StatKey{App: q.App, Verdict: verdict, Direction: DNSDirection}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.rememberLocked(q, now)
	if cur, ok := l.agg.seen(keyOf(&rec), now, l.final); ok {
		l.ring.update(cur)
		return
	}
	l.addLocked(rec, sk, now)
}

// maxAddrs bounds the addresses one DNS record carries.
const maxAddrs = 16

// rememberLocked keeps q's addresses -> name for dnsNames. When the table
// is full, expired names go first, then arbitrary ones.
func (l *Log) rememberLocked(q DNSQuery, now time.Time) {
	exp := now.Add(max(q.TTL, minDNSNameLife))
	for _, a := range q.Addrs {
		k := dnsKey{q.App, a.Unmap()}
		names := l.dnsNames[k]
		if i := slices.IndexFunc(names, func(n dnsName) bool { return n.name == q.Name }); i >= 0 {
			names[i].expires = exp
			continue
		}
		if names == nil && len(l.dnsNames) >= maxDNSNames {
			l.pruneNamesLocked(now)
		}
		if len(names) < maxNames {
			l.dnsNames[k] = append(names, dnsName{name: q.Name, expires: exp})
		}
	}
}

func (l *Log) pruneNamesLocked(now time.Time) {
	for k, names := range l.dnsNames {
		names = slices.DeleteFunc(names, func(n dnsName) bool { return !n.expires.After(now) })
		if len(names) == 0 {
			delete(l.dnsNames, k)
		} else {
			l.dnsNames[k] = names
		}
	}
	for k := range l.dnsNames {
		if len(l.dnsNames) < maxDNSNames {
			break
		}
		delete(l.dnsNames, k)
	}
}

// auditNames returns the names audit-mode lookups of app answered addr with.
func (l *Log) auditNames(app string, addr netip.Addr, now time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, n := range l.dnsNames[dnsKey{app, addr.Unmap()}] {
		if n.expires.After(now) {
			out = append(out, n.name)
		}
	}
	return out
}
