package dnsproxy

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// udpStub serves one stub address over UDP. One goroutine reads; workers
// answer. Workers start when more queries wait than workers idle, up to a bound,
// and all but one end after idling, so an idle stub holds two goroutines and
// a busy one does not pay for a new goroutine and its stack growth per query.
type udpStub struct {
	pc     *net.UDPConn
	out    stubSender
	answer func(req *dns.Msg) *dns.Msg
	log    *slog.Logger

	jobs       chan udpJob
	maxWorkers int32
	idleAfter  time.Duration
	workers    atomic.Int32
	idle       atomic.Int32
	dropped    atomic.Uint64
	wg         sync.WaitGroup
}

type udpJob struct {
	buf  *[]byte
	n    int
	from netip.AddrPort
}

const (
	// udpQueue bounds the queries read but not yet taken by a worker; more
	// are dropped, as a full socket buffer would.
	udpQueue = 256
	// maxQuery is the largest query read; larger ones are cut and then fail
	// to parse.
	maxQuery = 4096
	// workerIdle is how long an extra worker waits for work before ending.
	workerIdle = 10 * time.Second
)

var queryPool = sync.Pool{New: func() any { b := make([]byte, maxQuery); return &b }}

func newUDPStub(pc *net.UDPConn, maxWorkers int, idleAfter time.Duration, log *slog.Logger, answer func(*dns.Msg) *dns.Msg) *udpStub {
	s := &udpStub{pc: pc, out: newStubSender(pc), answer: answer, log: log, jobs: make(chan udpJob, udpQueue), maxWorkers: int32(max(maxWorkers, 1)), idleAfter: idleAfter}
	s.wg.Add(2)
	go s.read()
	s.workers.Add(1)
	go s.work(false)
	return s
}

func (s *udpStub) read() {
	defer s.wg.Done()
	defer close(s.jobs)
	for {
		bp := queryPool.Get().(*[]byte)
		n, from, err := s.pc.ReadFromUDPAddrPort(*bp)
		if err != nil {
			queryPool.Put(bp)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like
		}
		if n < 12 { // not even a header: nothing to answer
			queryPool.Put(bp)
			continue
		}
		select {
		case s.jobs <- udpJob{buf: bp, n: n, from: from}:
		default:
			queryPool.Put(bp)
			s.dropped.Add(1)
			continue
		}
		// More queries waiting than idle workers: one more worker, up to the
		// bound. (Comparing with zero idle workers would leave a burst that
		// arrived before the idle one woke up waiting behind it.)
		if int32(len(s.jobs)) > s.idle.Load() && s.workers.Load() < s.maxWorkers {
			s.workers.Add(1)
			s.wg.Add(1)
			go s.work(true)
		}
	}
}

// work answers queries until the queue closes, or, for an extra worker,
// until it idled for workerIdle.
func (s *udpStub) work(extra bool) {
	defer s.wg.Done()
	var t *time.Timer
	var idleC <-chan time.Time
	if extra {
		t = time.NewTimer(s.idleAfter)
		defer t.Stop()
		idleC = t.C
	}
	out := make([]byte, 0, 2048)
	for {
		s.idle.Add(1)
		select {
		case j, ok := <-s.jobs:
			s.idle.Add(-1)
			if !ok {
				s.workers.Add(-1)
				return
			}
			out = s.serve(j, out[:0])
			if t != nil {
				t.Reset(s.idleAfter)
			}
		case <-idleC:
			s.idle.Add(-1)
			s.workers.Add(-1)
			return
		}
	}
}

func (s *udpStub) serve(j udpJob, out []byte) []byte {
	b := (*j.buf)[:j.n]
	if b[2]&0x80 != 0 { // a response: never answer one
		queryPool.Put(j.buf)
		return out
	}
	req := new(dns.Msg)
	err := req.Unpack(b)
	var resp *dns.Msg
	if err != nil {
		// What does not parse gets FORMERR with its ID, as miekg's server does.
		resp = &dns.Msg{MsgHdr: dns.MsgHdr{Id: uint16(b[0])<<8 | uint16(b[1]), Response: true, Opcode: int(b[2]>>3) & 0xF, Rcode: dns.RcodeFormatError}}
	} else {
		resp = s.answer(req)
	}
	queryPool.Put(j.buf)
	if resp == nil {
		return out
	}
	wire, err := resp.PackBuffer(out[:cap(out)])
	if err != nil {
		s.log.Debug("pack dns answer", "err", err)
		return out
	}
	if err := s.out.send(wire, j.from); err != nil {
		s.log.Debug("write dns answer", "err", err)
	}
	if cap(wire) > cap(out) && cap(wire) <= 65535 {
		return wire[:0]
	}
	return out
}

// close stops reading and waits for the workers to finish what they took.
func (s *udpStub) close() {
	s.pc.Close()
	s.wg.Wait()
}
