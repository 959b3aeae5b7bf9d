package dnsproxy

import (
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func startUDPStub(t *testing.T, maxWorkers int, idle time.Duration, answer func(*dns.Msg) *dns.Msg) (*udpStub, *net.UDPConn) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := newUDPStub(pc, maxWorkers, idle, slog.New(slog.DiscardHandler), answer)
	t.Cleanup(s.close)
	c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

func TestUDPStubMalformed(t *testing.T) {
	_, c := startUDPStub(t, 4, time.Minute, func(req *dns.Msg) *dns.Msg { return new(dns.Msg).SetReply(req) })
	// A header and garbage: FORMERR with the query's ID.
	c.Write([]byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	buf := make([]byte, 512)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var m dns.Msg
	if err := m.Unpack(buf[:n]); err != nil || m.Id != 0xabcd || m.Rcode != dns.RcodeFormatError || !m.Response {
		t.Errorf("answer to garbage: %v %v", &m, err)
	}
	// A response is never answered (no reflection loops); a proper query
	// sent after it is, and is the next thing read.
	resp := new(dns.Msg).SetQuestion("x.example.", dns.TypeA)
	resp.Response = true
	resp.Id = 1
	b, _ := resp.Pack()
	c.Write(b)
	q := new(dns.Msg).SetQuestion("y.example.", dns.TypeA)
	q.Id = 2
	b, _ = q.Pack()
	c.Write(b)
	n, err = c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unpack(buf[:n]); err != nil || m.Id != 2 {
		t.Errorf("first answer after a response: %v %v, want the answer to ID 2", &m, err)
	}
}

// Workers grow with waiting queries up to the bound, extra ones end after
// idling, and a full queue drops instead of growing.
func TestUDPStubWorkers(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	s, c := startUDPStub(t, 4, 50*time.Millisecond, func(req *dns.Msg) *dns.Msg {
		<-release
		return new(dns.Msg).SetReply(req)
	})
	t.Cleanup(unblock) // before the stub's close, which waits for the workers
	q := new(dns.Msg).SetQuestion("x.example.", dns.TypeA)
	b, _ := q.Pack()
	for range 8 {
		c.Write(b)
	}
	waitFor(t, "4 workers", func() bool { return s.workers.Load() == 4 })
	// The socket buffer may drop some of a burst; keep sending until the
	// stub's own queue overflows.
	waitFor(t, "drops", func() bool {
		c.Write(b)
		return s.dropped.Load() > 0
	})
	if n := s.workers.Load(); n != 4 {
		t.Errorf("%d workers, want the bound 4", n)
	}
	unblock()
	waitFor(t, "extra workers to end", func() bool { return s.workers.Load() == 1 })
	t.Logf("dropped %d", s.dropped.Load())
}
