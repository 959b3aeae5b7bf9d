package audit

import (
	"container/list"
	"net/netip"
	"time"

	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// aggKey is what makes two denials "the same". The port is the destination
// port in both directions, because the source port is the ephemeral one.
type aggKey struct {
	app       string
	verdict   logprefix.Verdict
	direction logprefix.Direction
	proto     Proto
	remote    netip.Addr
	port      uint16
	icmp      uint16 // type<<8 | code for ICMP and ICMPv6
	name      string // DNS records: the name asked
	qtype     string
}

func keyOf(r *Record) aggKey {
	k := aggKey{
		app:       r.App,
		verdict:   r.Verdict,
		direction: r.Direction,
		proto:     r.Proto,
		remote:    r.Remote().Addr(),
		port:      r.DstPort,
		name:      r.Name,
		qtype:     r.QType,
	}
	if r.ICMP != nil {
		k.icmp = uint16(r.ICMP.Type)<<8 | uint16(r.ICMP.Code)
	}
	return k
}

// aggregator keeps the open aggregates: at most max of them, each for a
// fixed window from its first packet. Not safe for concurrent use.
type aggregator struct {
	window time.Duration
	max    int
	byKey  map[aggKey]*list.Element // of *aggregate
	order  list.List                // oldest first
}

type aggregate struct {
	rec Record
	// opened is when the window began, by the clock's monotonic reading if
	// it has one, so that wall clock steps do not stretch a window.
	opened time.Time
}

// closed reports whether the window of g has ended at now. A clock that went
// backwards also ends it, rather than keeping it open until time catches up.
func (a *aggregator) closed(g *aggregate, now time.Time) bool {
	age := now.Sub(g.opened)
	return age >= a.window || age < 0
}

func newAggregator(window time.Duration, max int) *aggregator {
	return &aggregator{window: window, max: max, byKey: make(map[aggKey]*list.Element)}
}

func (a *aggregator) len() int { return a.order.Len() }

// seen counts one more packet for k at now if k's window is open and returns
// the updated aggregate. A closed window is removed, and if that aggregate
// grew after it was first reported, final gets its last state.
func (a *aggregator) seen(k aggKey, now time.Time, final func(Record)) (Record, bool) {
	e, ok := a.byKey[k]
	if !ok {
		return Record{}, false
	}
	g := e.Value.(*aggregate)
	if a.closed(g, now) {
		a.remove(e, final)
		return Record{}, false
	}
	g.rec.Count++
	g.rec.Last = now.Round(0)
	return g.rec, true
}

// start opens an aggregate for r at now. When the table is full it first closes the
// oldest one, passes it to final if it grew, and reports the eviction.
func (a *aggregator) start(r Record, now time.Time, final func(Record)) (evicted bool) {
	k := keyOf(&r)
	if e, ok := a.byKey[k]; ok {
		a.remove(e, final)
	}
	if a.order.Len() >= a.max {
		a.remove(a.order.Front(), final)
		evicted = true
	}
	a.byKey[k] = a.order.PushBack(&aggregate{rec: r, opened: now})
	return evicted
}

// expire closes every aggregate whose window ended by now.
func (a *aggregator) expire(now time.Time, final func(Record)) {
	for e := a.order.Front(); e != nil; {
		next := e.Next()
		if a.closed(e.Value.(*aggregate), now) {
			a.remove(e, final)
		}
		e = next
	}
}

// flush closes every aggregate.
func (a *aggregator) flush(final func(Record)) {
	for a.order.Len() > 0 {
		a.remove(a.order.Front(), final)
	}
}

func (a *aggregator) remove(e *list.Element, final func(Record)) {
	g := e.Value.(*aggregate)
	a.order.Remove(e)
	delete(a.byKey, keyOf(&g.rec))
	if g.rec.Count > 1 {
		final(g.rec)
	}
}
