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
}

// forwarder sends each question on a fresh socket (random source port,
// random ID) marked with the system mark, fails over between upstreams and
// retries over TCP when a UDP answer is truncated.
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

// close releases what the forwarder holds. It is idempotent and safe while
// exchanges run: those may then fail.
func (f *forwarder) close() {}

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
		resp, err := f.try(ctx, up.addr, wire, q, tcp)
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

// try asks one upstream once, over UDP (then TCP if truncated) or TCP.
func (f *forwarder) try(ctx context.Context, addr netip.AddrPort, wire []byte, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.tryTimeout)
	defer cancel()
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(wire, id)
	if !tcp {
		resp, err := f.tryUDP(ctx, addr, wire, q, id)
		if err != nil || !resp.Truncated {
			return resp, err
		}
		id = uint16(rand.Uint32())
		binary.BigEndian.PutUint16(wire, id)
	}
	return f.tryTCP(ctx, addr, wire, q, id)
}

func (f *forwarder) tryUDP(ctx context.Context, addr netip.AddrPort, wire []byte, q *dns.Msg, id uint16) (*dns.Msg, error) {
	conn, err := dialUDP(addr, f.mark)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
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
