package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// exchanger sends a question upstream and returns a checked answer. The
// forwarder is the real one; tests and fuzzing put fakes here.
type exchanger interface {
	exchange(ctx context.Context, q *dns.Msg, tcp bool) (*dns.Msg, error)
}

// errNoUpstream: the policy lists no upstream servers.
var errNoUpstream = errors.New("no upstream DNS servers configured")

type upstream struct {
	addr    netip.AddrPort
	queries atomic.Uint64
	errors  atomic.Uint64

	mu     sync.Mutex
	idle   []*pooledConn // LIFO: the most recently used socket first
	closed bool
}

// Upstream UDP sockets are pooled. Opening a socket per query cost six
// system calls and a new conntrack entry (through the nat chain) per query,
// a third of the proxy's CPU time per query on the miss path. Each query
// still goes out with a random ID from a socket whose port the kernel chose
// at random, connected (the kernel drops datagrams from any other address
// or port), and the answer must match ID and question. A socket serves one
// query at a time, for at most maxSocketUses queries and maxSocketAge: an
// off-path attacker who learned a port through a side channel can use it
// for a few dozen queries, not for the life of the process, and still has
// to guess the ID. Datagrams that arrive while a socket idles are discarded
// before its next query, so answers forged in advance cannot wait there. A
// socket whose exchange failed or timed out is closed, never reused, so a
// late answer cannot land in a later exchange's read; stray datagrams are
// dropped by the ID and question check.
const (
	maxSocketUses  = 64
	maxSocketAge   = 10 * time.Second
	maxIdleSockets = 256
)

type pooledConn struct {
	conn udpConn
	uses int
	born time.Time
}

// get takes an idle socket or opens one. Sockets past maxSocketAge are
// closed on the way, and one from the bottom of the pool each time, so that
// sockets a burst left behind do not stay open.
func (u *upstream) get(mark uint32) (*pooledConn, error) {
	now := time.Now()
	var stale []*pooledConn
	var pc *pooledConn
	u.mu.Lock()
	if len(u.idle) > 0 && now.Sub(u.idle[0].born) >= maxSocketAge {
		stale = append(stale, u.idle[0])
		u.idle = slices.Delete(u.idle, 0, 1)
	}
	for len(u.idle) > 0 && pc == nil {
		n := len(u.idle)
		pc = u.idle[n-1]
		u.idle[n-1] = nil
		u.idle = u.idle[:n-1]
		if now.Sub(pc.born) >= maxSocketAge {
			stale = append(stale, pc)
			pc = nil
		}
	}
	u.mu.Unlock()
	for _, s := range stale {
		s.conn.Close()
	}
	if pc != nil {
		if err := drainUDP(pc.conn); err == nil {
			return pc, nil
		}
		pc.conn.Close()
	}
	c, err := dialUDP(u.addr, mark)
	if err != nil {
		return nil, err
	}
	return &pooledConn{conn: c, born: now}, nil
}

// put returns a socket after a successful exchange; worn-out sockets, and
// any after close, are closed instead.
func (u *upstream) put(pc *pooledConn, now time.Time) {
	pc.uses++
	if pc.uses < maxSocketUses && now.Sub(pc.born) < maxSocketAge {
		u.mu.Lock()
		if !u.closed && len(u.idle) < maxIdleSockets {
			u.idle = append(u.idle, pc)
			u.mu.Unlock()
			return
		}
		u.mu.Unlock()
	}
	pc.conn.Close()
}

func (u *upstream) close() {
	u.mu.Lock()
	idle := u.idle
	u.idle, u.closed = nil, true
	u.mu.Unlock()
	for _, pc := range idle {
		pc.conn.Close()
	}
}

// forwarder sends each question with a random ID on a pooled socket marked
// with the system mark, fails over between upstreams and retries over TCP
// when a UDP answer is truncated.
type forwarder struct {
	ups        []*upstream
	preferred  atomic.Uint32 // index of the upstream that answered last
	mark       uint32
	dialer     net.Dialer // for TCP
	tryTimeout time.Duration
}

func newForwarder(addrs []netip.AddrPort, mark uint32, tryTimeout time.Duration) *forwarder {
	f := &forwarder{tryTimeout: tryTimeout, mark: mark}
	for _, a := range addrs {
		f.ups = append(f.ups, &upstream{addr: a})
	}
	f.dialer.Control = markControl(mark)
	return f
}

// close releases the pooled sockets. It is idempotent and safe while
// exchanges run: their sockets are closed when they finish.
func (f *forwarder) close() {
	for _, u := range f.ups {
		u.close()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

// exchange tries the upstreams, starting with the one that answered last,
// until one gives an answer other than SERVFAIL, REFUSED or NOTIMP, or ctx
// ends. Each upstream is tried once, or twice when it is the only one.
func (f *forwarder) exchange(ctx context.Context, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	if len(f.ups) == 0 {
		return nil, errNoUpstream
	}
	wire, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack upstream query: %w", err)
	}
	tries := max(len(f.ups), 2)
	start := int(f.preferred.Load())
	var last *dns.Msg
	var errs []error
	for i := range tries {
		if ctx.Err() != nil {
			break
		}
		idx := (start + i) % len(f.ups)
		up := f.ups[idx]
		up.queries.Add(1)
		resp, err := f.try(ctx, up, wire, q, tcp)
		if err != nil {
			up.errors.Add(1)
			errs = append(errs, fmt.Errorf("%s: %w", up.addr, err))
			continue
		}
		switch resp.Rcode {
		case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented:
			up.errors.Add(1)
			last = resp
			errs = append(errs, fmt.Errorf("%s: %s", up.addr, dns.RcodeToString[resp.Rcode]))
			continue
		}
		f.preferred.Store(uint32(idx))
		return resp, nil
	}
	if last != nil {
		return last, nil
	}
	if len(errs) == 0 {
		errs = append(errs, ctx.Err())
	}
	return nil, fmt.Errorf("upstream: %w", errors.Join(errs...))
}

// try asks one upstream once, over UDP (then TCP if truncated) or TCP,
// within tryTimeout and ctx.
func (f *forwarder) try(ctx context.Context, up *upstream, wire []byte, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(wire, id)
	if !tcp {
		now := time.Now()
		dl := now.Add(f.tryTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		resp, err := f.tryUDP(ctx, up, now, dl, wire, q, id)
		if err != nil || !resp.Truncated {
			return resp, err
		}
		id = uint16(rand.Uint32())
		binary.BigEndian.PutUint16(wire, id)
	}
	ctx, cancel := context.WithTimeout(ctx, f.tryTimeout)
	defer cancel()
	return f.tryTCP(ctx, up.addr, wire, q, id)
}

// tryUDP exchanges on a pooled socket until dl; ctx ending stops it early.
func (f *forwarder) tryUDP(ctx context.Context, up *upstream, now, dl time.Time, wire []byte, q *dns.Msg, id uint16) (*dns.Msg, error) {
	pc, err := up.get(f.mark)
	if err != nil {
		return nil, err
	}
	pc.conn.SetDeadline(dl)
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { pc.conn.SetDeadline(time.Unix(1, 0)) })
	}
	resp, err := exchangeUDP(ctx, pc.conn, wire, q, id)
	// Once the AfterFunc ran (or runs), it may move the deadline of whoever
	// uses the socket next: such a socket is not reused.
	if stopped := stop == nil || stop(); err == nil && stopped {
		up.put(pc, now)
	} else {
		pc.conn.Close()
	}
	return resp, err
}

func exchangeUDP(ctx context.Context, conn udpConn, wire []byte, q *dns.Msg, id uint16) (*dns.Msg, error) {
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		// Anything that is not the answer to this question is ignored, as a
		// spoofed packet would be, and the wait goes on.
		if resp, err := checkAnswer(buf[:n], q, id); err == nil {
			return resp, nil
		}
	}
}

func (f *forwarder) tryTCP(ctx context.Context, addr netip.AddrPort, wire []byte, q *dns.Msg, id uint16) (*dns.Msg, error) {
	conn, err := f.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	out := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	copy(out[2:], wire)
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, fmt.Errorf("read tcp answer: %w", err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:binary.BigEndian.Uint16(l[:])]
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, fmt.Errorf("read tcp answer: %w", err)
	}
	return checkAnswer(buf, q, id)
}

// checkAnswer unpacks an upstream message and checks that it answers q:
// same ID, a response, the same question name, type and class.
func checkAnswer(b []byte, q *dns.Msg, id uint16) (*dns.Msg, error) {
	if len(b) < 12 {
		return nil, errors.New("answer shorter than a DNS header")
	}
	if got := binary.BigEndian.Uint16(b); got != id {
		return nil, fmt.Errorf("answer ID %d, want %d", got, id)
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil {
		return nil, fmt.Errorf("unpack answer: %w", err)
	}
	if !resp.Response {
		return nil, errors.New("message is not a response")
	}
	if resp.Opcode != dns.OpcodeQuery {
		return nil, fmt.Errorf("answer opcode %d, want QUERY", resp.Opcode)
	}
	if len(resp.Question) != 1 {
		return nil, fmt.Errorf("answer has %d questions, want 1", len(resp.Question))
	}
	got, want := resp.Question[0], q.Question[0]
	if got.Qtype != want.Qtype || got.Qclass != want.Qclass || !strings.EqualFold(got.Name, want.Name) {
		return nil, fmt.Errorf("answer is for %s %s %s, asked %s %s %s", got.Name, dns.Class(got.Qclass), dns.Type(got.Qtype), want.Name, dns.Class(want.Qclass), dns.Type(want.Qtype))
	}
	return resp, nil
}
