package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// rawUpstream is a UDP server the test steers: it answers a query unless
// silent is set, and remembers the last client address.
type rawUpstream struct {
	pc   *net.UDPConn
	addr netip.AddrPort

	mu     sync.Mutex
	silent bool
	last   netip.AddrPort
}

func startRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{pc: pc, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.last = from
			silent := u.silent
			u.mu.Unlock()
			q := new(dns.Msg)
			if silent || q.Unpack(buf[:n]) != nil {
				continue
			}
			r := new(dns.Msg).SetReply(q)
			r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(198, 18, 0, 1)})
			b, _ := r.Pack()
			pc.WriteToUDPAddrPort(b, from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return u
}

func (u *rawUpstream) set(silent bool) {
	u.mu.Lock()
	u.silent = silent
	u.mu.Unlock()
}

func (u *rawUpstream) client() netip.AddrPort {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstream) idleCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.idle)
}

func question(name string) *dns.Msg {
	return upstreamQuery(new(dns.Msg).SetQuestion(name, dns.TypeA))
}

func TestForwarderPool(t *testing.T) {
	up := startRawUpstream(t)
	f := newForwarder([]netip.AddrPort{up.addr}, 0, 300*time.Millisecond)
	t.Cleanup(f.close)
	u := f.ups[0]
	ctx := context.Background()

	// An answered exchange returns its socket; the next one reuses it.
	if _, err := f.exchange(ctx, question("a.example."), false); err != nil {
		t.Fatal(err)
	}
	first := up.client()
	if _, err := f.exchange(ctx, question("b.example."), false); err != nil {
		t.Fatal(err)
	}
	if got := up.client(); got != first {
		t.Errorf("second query came from %v, want the pooled socket %v", got, first)
	}
	if n := u.idleCount(); n != 1 {
		t.Errorf("%d idle sockets after two exchanges in turn, want 1", n)
	}

	// A datagram that arrives while the socket idles is discarded before
	// the next query (stray or forged in advance), and the exchange works.
	stray := new(dns.Msg).SetQuestion("c.example.", dns.TypeA)
	stray.Response = true
	b, _ := stray.Pack()
	if _, err := up.pc.WriteToUDPAddrPort(b, first); err != nil {
		t.Fatal(err)
	}
	pc := u.idle[0]
	waitQueued(t, pc.conn)
	if err := drainUDP(pc.conn); err != nil {
		t.Fatal(err)
	}
	if n := queued(t, pc.conn); n != 0 {
		t.Errorf("%d bytes queued after drain, want 0", n)
	}

	// A socket is retired after maxSocketUses queries.
	for range maxSocketUses {
		if _, err := f.exchange(ctx, question("d.example."), false); err != nil {
			t.Fatal(err)
		}
	}
	if got := up.client(); got == first {
		t.Errorf("source port %v still in use after %d queries", got, maxSocketUses+2)
	}

	// A socket past maxSocketAge is not used again.
	if n := u.idleCount(); n != 1 {
		t.Fatalf("%d idle sockets, want 1", n)
	}
	u.idle[0].born = time.Now().Add(-maxSocketAge)
	old := up.client()
	if _, err := f.exchange(ctx, question("f.example."), false); err != nil {
		t.Fatal(err)
	}
	if got := up.client(); got == old {
		t.Errorf("source port %v still in use after %v", got, maxSocketAge)
	}

	// A socket whose exchange timed out is closed, not pooled.
	for len(u.idle) > 0 {
		u.idle[len(u.idle)-1].conn.Close()
		u.idle = u.idle[:len(u.idle)-1]
	}
	up.set(true)
	if _, err := f.exchange(ctx, question("e.example."), false); err == nil {
		t.Fatal("exchange with a silent upstream succeeded")
	}
	if n := u.idleCount(); n != 0 {
		t.Errorf("%d idle sockets after a timeout, want 0", n)
	}
}

// TestForwarderCloseDuringExchanges: close while exchanges run, twice;
// the running ones end (answered or failed), and nothing stays pooled.
func TestForwarderCloseDuringExchanges(t *testing.T) {
	up := startRawUpstream(t)
	f := newForwarder([]netip.AddrPort{up.addr}, 0, 300*time.Millisecond)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				f.exchange(context.Background(), question("a.example."), false)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.ups[0].queries.Load() < 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	f.close()
	f.close()
	close(stop)
	wg.Wait()
	if n := f.ups[0].idleCount(); n != 0 {
		t.Errorf("%d idle sockets after close, want 0", n)
	}
	if _, err := f.exchange(context.Background(), question("b.example."), false); err != nil {
		t.Errorf("exchange after close: %v (a closed forwarder still answers, without pooling)", err)
	}
	if n := f.ups[0].idleCount(); n != 0 {
		t.Errorf("%d idle sockets after an exchange on a closed forwarder, want 0", n)
	}
}

func queued(t *testing.T, c udpConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return n
}

func waitQueued(t *testing.T, c udpConn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for queued(t, c) == 0 {
		if time.Now().After(deadline) {
			t.Fatal(errors.New("stray datagram never arrived"))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStubSender: answers sent with the raw sendto reach IPv4 and IPv6
// clients, from the stub's own address and port.
func TestStubSender(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			lo := "127.0.0.1:0"
			if network == "udp6" {
				lo = "[::1]:0"
			}
			stub, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(lo)))
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer stub.Close()
			client, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(lo)))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			s := newStubSender(stub)
			want := []byte("an answer of some bytes")
			if err := s.send(want, client.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
				t.Fatal(err)
			}
			client.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 100)
			n, from, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != string(want) {
				t.Errorf("got %q, want %q", buf[:n], want)
			}
			if want := stub.LocalAddr().(*net.UDPAddr).AddrPort(); from != want {
				t.Errorf("from %v, want the stub's %v", from, want)
			}
		})
	}
}
