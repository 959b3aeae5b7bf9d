// Package audit turns the packets pinhole's firewall logs to NFLOG into
// records naming the app, the remote address and port, and the host names the
// app learned that address for; it aggregates repeats, keeps recent records in
// memory, streams them to subscribers and appends them to a rotated JSON
// lines file.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// Record is one denied (or, in audit mode, would-be-denied) flow, or, with
// Kind "dns", a lookup audit mode answered that enforce mode would have
// refused. Repeats of the same flow (or app and name) within the
// aggregation window raise Count and Last instead of making new records; a
// record with an ID seen before is a later state of that record and
// replaces it.
type Record struct {
	ID    uint64    `json:"id"`
	Kind  Kind      `json:"kind,omitempty"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count uint64    `json:"count"`
	// App is the identity the firewall logged: an app name, "system" or
	// "unmanaged".
	App       string              `json:"app"`
	Verdict   logprefix.Verdict   `json:"verdict"`
	Direction logprefix.Direction `json:"direction"`
	Proto     Proto               `json:"proto"`
	Src       netip.Addr          `json:"src"`
	SrcPort   uint16              `json:"src_port,omitempty"`
	Dst       netip.Addr          `json:"dst"`
	DstPort   uint16              `json:"dst_port,omitempty"`
	ICMP      *ICMP               `json:"icmp,omitempty"`
	TCPFlags  TCPFlags            `json:"tcp_flags,omitempty"`
	// UID and GID are those of the socket's owner, when the kernel knew them
	// (not for packets the kernel made itself, nor usually for inbound ones).
	// They are the first packet's.
	UID      *uint32 `json:"uid,omitempty"`
	GID      *uint32 `json:"gid,omitempty"`
	InIface  string  `json:"in_iface,omitempty"`
	OutIface string  `json:"out_iface,omitempty"`
	// Hosts are the names App learned the remote address for.
	Hosts []string `json:"hosts,omitempty"`
	// LearnedBy names other apps that learned the remote address: a hint
	// that App got it some other way than its own DNS lookup.
	LearnedBy []string `json:"learned_by,omitempty"`
	Fragment  bool     `json:"fragment,omitempty"`
	Truncated bool     `json:"truncated,omitempty"`

	// Of DNS records: the name asked, its query type, the answer's
	// addresses and what enforce mode would have done.
	Name   string       `json:"name,omitempty"`
	QType  string       `json:"qtype,omitempty"`
	Addrs  []netip.Addr `json:"addrs,omitempty"`
	Reason string       `json:"reason,omitempty"`
}

// ICMP is the type and code of an ICMP or ICMPv6 message.
type ICMP struct {
	Type uint8 `json:"type"`
	Code uint8 `json:"code"`
}

// Remote is the far end of the flow: the destination of outbound packets and
// the source of inbound ones.
func (r *Record) Remote() netip.AddrPort {
	if r.Direction == logprefix.In {
		return netip.AddrPortFrom(r.Src, r.SrcPort)
	}
	return netip.AddrPortFrom(r.Dst, r.DstPort)
}

// Packet is one message from the firewall's NFLOG group.
type Packet struct {
	Prefix string
	// Payload starts at the IP header. It belongs to the receiver.
	Payload []byte
	// UID and GID are nil when the kernel sent none.
	UID, GID *uint32
	// InIface and OutIface are interface names, empty when unknown.
	InIface, OutIface string
	// Leaving says the packet was logged on its way out of the device (it
	// had an output device and no input device). An inbound denial logged
	// this way is the device's answer to a remote client, such as a SYN-ACK
	// of a listener that is not the app that declared the port.
	Leaving bool
}

// Sink receives what a Source reads. *Log is one.
type Sink interface {
	// Deliver hands over one logged packet.
	Deliver(Packet)
	// Lost reports packets lost on the way, such as a receive buffer
	// overrun; err says what happened.
	Lost(err error)
}

// Source reads logged packets, such as an NFLOG group.
type Source interface {
	// Run delivers packets to sink until ctx is done (then it returns nil) or
	// reading fails for good.
	Run(ctx context.Context, sink Sink) error
}

// Namer tells which host names an app learned an address for. internal/learned
// implements it.
type Namer interface {
	Names(app string, addr netip.Addr) []string
}

// Learners is optionally implemented by a Namer: LearnedBy names the apps
// that learned addr.
type Learners interface {
	LearnedBy(addr netip.Addr) []string
}

// Clock gives the time records are stamped with.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options configure a Log. Zero values get the defaults named.
type Options struct {
	// Dir, if not empty, is the state directory for the audit.jsonl files.
	Dir string
	// MaxFileSize is the size in bytes at which audit.jsonl is rotated
	// (1 MiB), and KeepFiles how many rotated files are kept (3).
	MaxFileSize int64
	KeepFiles   int
	// RingSize is how many recent records Query can see (1024).
	RingSize int
	// Window is how long repeats of a flow are aggregated into one record
	// (1 minute), and MaxAggregates how many flows are aggregated at once
	// (4096); beyond that the oldest aggregate is closed early.
	Window        time.Duration
	MaxAggregates int
	// DiskQueue is how many records may wait for the file writer (256).
	DiskQueue int
	// SubscriberBuffer is each subscriber's channel capacity (256), and
	// MaxSubscribers how many may subscribe at once (16).
	SubscriberBuffer int
	MaxSubscribers   int
	// Names, if non-nil, tells the host names behind remote addresses.
	Names Namer
	// Clock, if non-nil, replaces the system clock.
	Clock Clock
	// Logger, if non-nil, receives (rate-limited) problems.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	setDefault(&o.MaxFileSize, 1<<20)
	setDefault(&o.KeepFiles, 3)
	setDefault(&o.RingSize, 1024)
	setDefault(&o.Window, time.Minute)
	setDefault(&o.MaxAggregates, 4096)
	setDefault(&o.DiskQueue, 256)
	setDefault(&o.SubscriberBuffer, 256)
	setDefault(&o.MaxSubscribers, 16)
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Limits on what one record carries and how many counters Stats keeps.
const (
	maxNames    = 8
	maxStatKeys = 1024
	// OtherApp is the StatKey app that counts identities beyond maxStatKeys.
	OtherApp = "_other"
)

// Errors from Subscribe.
var (
	ErrClosed             = errors.New("audit log closed")
	ErrTooManySubscribers = errors.New("too many audit subscribers")
)

// StatKey groups the counters in Stats.
type StatKey struct {
	App       string
	Verdict   logprefix.Verdict
	Direction logprefix.Direction
}

// Stats are the audit's counters since New.
type Stats struct {
	// Packets counts logged packets with pinhole's prefix, Records the
	// records they made (the rest were aggregated).
	Packets map[StatKey]uint64
	Records map[StatKey]uint64
	// ForeignPrefix counts packets whose NFLOG prefix is not pinhole's,
	// ParseErrors those whose headers could not be read, and Lost those the
	// source reported lost.
	ForeignPrefix uint64
	ParseErrors   uint64
	Lost          uint64
	// Evictions counts aggregates closed early because MaxAggregates were open.
	Evictions uint64
	// SubscriberDrops counts records a slow subscriber missed.
	SubscriberDrops uint64
	// DiskWritten counts lines written, DiskDropped records not written (queue
	// full or file unusable), DiskErrors failed file operations.
	DiskWritten uint64
	DiskDropped uint64
	DiskErrors  uint64
	Rotations   uint64
	// Aggregates and Subscribers are the current numbers.
	Aggregates  int
	Subscribers int
}

// Log receives logged packets as a Sink and keeps the records they make.
type Log struct {
	opts  Options
	log   *slog.Logger
	lossy rate.Sometimes // rate limit for problem logs on the packet path

	mu      sync.Mutex
	closed  bool
	nextID  uint64
	agg     *aggregator
	ring    *ring
	subs    map[*subscriber]struct{}
	packets map[StatKey]uint64
	records map[StatKey]uint64
	foreign uint64
	parse   uint64
	lost    uint64
	evicted uint64
	dropped uint64
	// dnsNames are the names of audit-mode answers by app and address.
	dnsNames map[dnsKey][]dnsName

	disk *diskLog // nil without Dir
	stop chan struct{}
	wg   sync.WaitGroup
}

type subscriber struct {
	ch   chan Record
	stop func() bool
}

// New starts a Log. With opts.Dir set, it loads the newest records of the
// previous run into the ring and appends to its file; a file it cannot use is
// logged and counted, never fatal.
func New(opts Options) *Log {
	opts.setDefaults()
	l := &Log{
		opts:     opts,
		log:      opts.Logger.With("component", "audit"),
		lossy:    rate.Sometimes{First: 3, Interval: time.Minute},
		nextID:   1,
		agg:      newAggregator(opts.Window, opts.MaxAggregates),
		ring:     newRing(opts.RingSize),
		subs:     make(map[*subscriber]struct{}),
		packets:  make(map[StatKey]uint64),
		records:  make(map[StatKey]uint64),
		stop:     make(chan struct{}),
		dnsNames: make(map[dnsKey][]dnsName),
	}
	if opts.Dir != "" {
		l.disk = newDiskLog(opts, l.log)
		prev := l.disk.loadPrevious(opts.RingSize)
		for _, r := range prev {
			l.ring.push(r)
		}
		if len(prev) > 0 {
			l.nextID = prev[len(prev)-1].ID + 1
		}
		l.wg.Go(l.disk.run)
	}
	l.wg.Go(l.sweep)
	return l
}

// sweep closes aggregates whose window has ended, so their final counts
// reach subscribers and the file without waiting for another packet.
func (l *Log) sweep() {
	t := time.NewTicker(min(max(l.opts.Window/4, time.Second), 15*time.Second))
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			l.agg.expire(l.opts.Clock.Now(), l.final)
			l.mu.Unlock()
		}
	}
}

// Deliver turns one logged packet into a new record or counts it in an open
// aggregate. Packets with a foreign prefix or unreadable headers are counted
// and dropped.
func (l *Log) Deliver(p Packet) {
	pre, err := parsePrefix(p.Prefix)
	if err != nil {
		l.count(&l.foreign)
		return
	}
	flow, err := ParsePacket(p.Payload)
	if err != nil {
		l.count(&l.parse)
		l.lossy.Do(func() {
			l.log.Warn("unreadable logged packet", "prefix", p.Prefix, "bytes", len(p.Payload), "err", err)
		})
		return
	}
	now := l.opts.Clock.Now()
	rec := Record{
		First:     now.Round(0),
		Last:      now.Round(0),
		Count:     1,
		App:       pre.Identity,
		Verdict:   pre.Verdict,
		Direction: pre.Direction,
		Proto:     flow.Proto,
		Src:       flow.Src,
		SrcPort:   flow.SrcPort,
		Dst:       flow.Dst,
		DstPort:   flow.DstPort,
		TCPFlags:  flow.TCPFlags,
		UID:       p.UID,
		GID:       p.GID,
		InIface:   p.InIface,
		OutIface:  p.OutIface,
		Fragment:  flow.Fragment,
		Truncated: flow.Truncated,
	}
	if pre.Direction == logprefix.In && p.Leaving {
		// Record the client's attempt, not the device's answer to it.
		rec.Src, rec.Dst = rec.Dst, rec.Src
		rec.SrcPort, rec.DstPort = rec.DstPort, rec.SrcPort
	}
	if flow.Proto == ProtoICMP || flow.Proto == ProtoICMPv6 {
		rec.ICMP = &ICMP{Type: flow.ICMPType, Code: flow.ICMPCode}
	}
	k := keyOf(&rec)
	sk := StatKey{App: pre.Identity, Verdict: pre.Verdict, Direction: pre.Direction}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	bump(l.packets, sk)
	if cur, ok := l.agg.seen(k, now, l.final); ok {
		l.ring.update(cur)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()

	// Ask for names without holding the lock: the Namer has locks of its own.
	rec.Hosts, rec.LearnedBy = l.lookup(rec.App, rec.Remote().Addr(), now)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.addLocked(rec, sk, now)
}

// addLocked numbers a new record, starts its aggregation, counts it and
// hands it to the ring and the subscribers. l.mu is held.
func (l *Log) addLocked(rec Record, sk StatKey, now time.Time) {
	rec.ID = l.nextID
	l.nextID++
	if l.agg.start(rec, now, l.final) {
		l.evicted++
	}
	bump(l.records, sk)
	l.ring.push(rec)
	l.publish(rec)
}

// Lost counts packets the source lost.
func (l *Log) Lost(err error) {
	l.count(&l.lost)
	l.lossy.Do(func() { l.log.Warn("audit packets lost", "err", err) })
}

func (l *Log) count(c *uint64) {
	l.mu.Lock()
	*c++
	l.mu.Unlock()
}

// bump counts one for k, folding identities beyond the cap into OtherApp.
func bump(m map[StatKey]uint64, k StatKey) {
	if _, ok := m[k]; !ok && len(m) >= maxStatKeys {
		k.App = OtherApp
	}
	m[k]++
}

func (l *Log) lookup(app string, addr netip.Addr, now time.Time) (hosts, others []string) {
	if !addr.IsValid() {
		return nil, nil
	}
	if audited := l.auditNames(app, addr, now); len(audited) > 0 {
		// The names of audit-mode answers, which opened nothing.
		hosts = audited
	}
	if l.opts.Names == nil {
		return clip(hosts), nil
	}
	if learned := l.opts.Names.Names(app, addr); len(learned) > 0 {
		hosts = append(hosts, learned...)
		slices.Sort(hosts)
		hosts = slices.Compact(hosts)
	}
	hosts = clip(hosts)
	if ln, ok := l.opts.Names.(Learners); ok {
		for _, a := range ln.LearnedBy(addr) {
			if a != app && len(others) < maxNames {
				others = append(others, a)
			}
		}
	}
	return hosts, others
}

func clip(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s[:min(len(s), maxNames)])
}

// final publishes the last state of an aggregate that grew. Called with mu held.
func (l *Log) final(r Record) {
	l.ring.update(r)
	l.publish(r)
}

// publish hands r to every subscriber that has room and to the file writer.
// Called with mu held; it never blocks.
func (l *Log) publish(r Record) {
	for s := range l.subs {
		select {
		case s.ch <- r:
		default:
			l.dropped++
		}
	}
	if l.disk != nil {
		l.disk.enqueue(r)
	}
}

// Filter selects records for Query.
type Filter struct {
	// App, if not empty, keeps only that identity's records.
	App string
	// Since, if not zero, keeps records whose Last is at or after it.
	Since time.Time
	// Limit, if positive, keeps only the newest Limit matches.
	Limit int
}

// Query returns the matching records still in the ring, oldest first; their
// slices are shared and must not be modified. To
// follow the log without a gap, Subscribe first, then Query, and skip
// streamed records whose ID and Count were already seen.
func (l *Log) Query(f Filter) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Record
	l.ring.eachNewest(func(r *Record) bool {
		if f.App != "" && r.App != f.App {
			return true
		}
		if !f.Since.IsZero() && r.Last.Before(f.Since) {
			return true
		}
		out = append(out, *r)
		return f.Limit <= 0 || len(out) < f.Limit
	})
	slices.Reverse(out)
	return out
}

// Subscribe streams new records and later states of aggregated ones until
// ctx is done or the Log is closed; then the channel is closed. A subscriber
// that falls behind misses records (counted in Stats.SubscriberDrops) rather
// than slowing anyone down.
func (l *Log) Subscribe(ctx context.Context) (<-chan Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if len(l.subs) >= l.opts.MaxSubscribers {
		return nil, fmt.Errorf("subscribe: %w (limit %d)", ErrTooManySubscribers, l.opts.MaxSubscribers)
	}
	s := &subscriber{ch: make(chan Record, l.opts.SubscriberBuffer)}
	l.subs[s] = struct{}{}
	s.stop = context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.unsubscribe(s)
	})
	return s.ch, nil
}

// unsubscribe drops s once. Called with mu held.
func (l *Log) unsubscribe(s *subscriber) {
	if _, ok := l.subs[s]; ok {
		delete(l.subs, s)
		close(s.ch)
	}
}

// Stats returns a snapshot of the counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	s := Stats{
		Packets:         make(map[StatKey]uint64, len(l.packets)),
		Records:         make(map[StatKey]uint64, len(l.records)),
		ForeignPrefix:   l.foreign,
		ParseErrors:     l.parse,
		Lost:            l.lost,
		Evictions:       l.evicted,
		SubscriberDrops: l.dropped,
		Aggregates:      l.agg.len(),
		Subscribers:     len(l.subs),
	}
	for k, v := range l.packets {
		s.Packets[k] = v
	}
	for k, v := range l.records {
		s.Records[k] = v
	}
	l.mu.Unlock()
	if l.disk != nil {
		l.disk.stats(&s)
	}
	return s
}

// Close publishes the final state of every open aggregate, ends all
// subscriptions, and writes and closes the file. Deliver does nothing after
// Close. The error is the file's, if its last flush or close failed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.agg.flush(l.final)
	for s := range l.subs {
		s.stop()
		l.unsubscribe(s)
	}
	l.mu.Unlock()
	if l.disk != nil {
		l.disk.close()
	}
	l.wg.Wait()
	if l.disk != nil {
		return l.disk.closeErr
	}
	return nil
}

// parsePrefix reads a pinhole NFLOG prefix and checks that its identity is
// a name pinhole could have written.
func parsePrefix(s string) (logprefix.Prefix, error) {
	p, err := logprefix.Parse(s)
	if err != nil {
		return p, err
	}
	if !validIdentity(p.Identity) {
		return logprefix.Prefix{}, fmt.Errorf("nflog prefix %q: identity %q is not an app name", s, p.Identity)
	}
	return p, nil
}

// validIdentity matches ^[a-z0-9][a-z0-9_-]{0,30}$, which covers app names
// and the reserved "system" and "unmanaged".
func validIdentity(s string) bool {
	if len(s) == 0 || len(s) > 31 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
