package dnsproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// testUpstream is an in-process DNS server on 127.0.0.1 (UDP and TCP on
// the same port) whose answers a test scripts.
type testUpstream struct {
	addr netip.AddrPort
	srvs []*dns.Server

	mu      sync.Mutex
	queries []seenQuery
}

type seenQuery struct {
	Name  string
	Type  uint16
	TCP   bool
	ID    uint16
	Port  uint16
	EDNS  bool
	Flags string
}

// zone is a tiny authoritative data set: records by owner name (with the
// trailing dot) in zone-file syntax.
type zone map[string][]string

func (z zone) handler(t testing.TB) func(w dns.ResponseWriter, r *dns.Msg) {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		found := false
		for range maxChain {
			rrs, ok := z[name]
			if !ok {
				break
			}
			found = true
			next := ""
			for _, s := range rrs {
				rr, err := dns.NewRR(name + " " + s)
				if err != nil {
					t.Errorf("zone record %q: %v", s, err)
					return
				}
				if c, ok := rr.(*dns.CNAME); ok {
					m.Answer = append(m.Answer, rr)
					next = c.Target
					continue
				}
				if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
					m.Answer = append(m.Answer, rr)
				}
				if srv, ok := rr.(*dns.SRV); ok && q.Qtype == dns.TypeSRV {
					m.Extra = append(m.Extra, z.records(t, srv.Target, dns.TypeA)...)
				}
				if ptr, ok := rr.(*dns.PTR); ok && q.Qtype == dns.TypePTR {
					for _, srv := range z.records(t, ptr.Ptr, dns.TypeSRV) {
						m.Extra = append(m.Extra, srv)
						m.Extra = append(m.Extra, z.records(t, srv.(*dns.SRV).Target, dns.TypeA)...)
					}
				}
			}
			if next == "" {
				break
			}
			name = next
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), opt.Do())
		}
		if w.LocalAddr().Network() == "udp" {
			size := dns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	}
}

func (z zone) records(t testing.TB, name string, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, s := range z[strings.ToLower(name)] {
		rr, err := dns.NewRR(strings.ToLower(name) + " " + s)
		if err != nil {
			t.Errorf("zone record %q: %v", s, err)
			continue
		}
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out
}

func startUpstream(t testing.TB, h func(w dns.ResponseWriter, r *dns.Msg)) *testUpstream {
	t.Helper()
	u := &testUpstream{}
	rec := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		sq := seenQuery{ID: r.Id, EDNS: r.IsEdns0() != nil}
		if len(r.Question) > 0 {
			sq.Name, sq.Type = r.Question[0].Name, r.Question[0].Qtype
		}
		ra := w.RemoteAddr()
		if ta, ok := ra.(*net.TCPAddr); ok {
			sq.TCP, sq.Port = true, uint16(ta.Port)
		} else if ua, ok := ra.(*net.UDPAddr); ok {
			sq.Port = uint16(ua.Port)
		}
		u.mu.Lock()
		u.queries = append(u.queries, sq)
		u.mu.Unlock()
		h(w, r)
	})
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no free port for UDP and TCP")
	}
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: rec}, {Listener: l, Handler: rec}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
		u.srvs = append(u.srvs, srv)
	}
	return u
}

func (u *testUpstream) seen() []seenQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenQuery(nil), u.queries...)
}

// fakeInserter records batches; hold, when set, blocks each Allow until a
// value arrives; fail makes Allow fail for elements of that app.
type fakeInserter struct {
	mu      sync.Mutex
	batches [][]learned.Element
	hold    chan struct{}
	entered chan int // receives the batch size as Allow starts, if non-nil
	fail    string
}

func (f *fakeInserter) Allow(elems []learned.Element) error {
	if f.entered != nil {
		f.entered <- len(elems)
	}
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range elems {
		if f.fail != "" && e.App == f.fail {
			return errors.New("fake: no set for " + e.App)
		}
	}
	f.batches = append(f.batches, append([]learned.Element(nil), elems...))
	return nil
}

func (f *fakeInserter) all() []learned.Element {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []learned.Element
	for _, b := range f.batches {
		out = append(out, b...)
	}
	return out
}

func (f *fakeInserter) numBatches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

func pat(t testing.TB, s string) hostname.Pattern {
	t.Helper()
	p, err := hostname.ParsePattern(s)
	if err != nil {
		t.Fatalf("ParsePattern(%q): %v", s, err)
	}
	return p
}

var (
	tcp443 = policy.Ports{{Proto: policy.TCP, Port: 443}}
)

// testPolicy: weather may reach api.example.com (tcp/443), *.cdn.example
// (any port) and the _ipp._tcp.example.com service; news reaches
// news.example.com; the system reaches time.example.com.
func testPolicy(t testing.TB, ups []netip.AddrPort, ports ...uint16) *policy.Policy {
	t.Helper()
	if len(ports) == 0 {
		ports = []uint16{0, 0}
	}
	p := &policy.Policy{
		Apps: []*policy.App{
			{Name: "weather", DNSPort: ports[0], Hosts: []policy.HostRule{
				{Pattern: pat(t, "api.example.com"), Ports: tcp443},
				{Pattern: pat(t, "*.cdn.example"), Ports: nil},
				{Pattern: pat(t, "_ipp._tcp.example.com"), Ports: nil},
				{Pattern: pat(t, "lab.example.com"), Ports: nil},
				{Pattern: pat(t, "printer.lan"), Ports: nil},
			}},
			{Name: "news", DNSPort: ports[1], Hosts: []policy.HostRule{
				{Pattern: pat(t, "news.example.com"), Ports: nil},
			}},
		},
		System: &policy.App{Name: policy.SystemName, Hosts: []policy.HostRule{
			{Pattern: pat(t, "time.example.com"), Ports: policy.Ports{{Proto: policy.UDP, Port: 123}}},
		}},
		DNS: policy.DNS{
			Upstreams:      ups,
			TTLFloor:       time.Second,
			TTLCeiling:     time.Hour,
			Grace:          time.Second,
			QueryTimeout:   300 * time.Millisecond,
			InsertTimeout:  time.Second,
			PrivateAllowed: []hostname.Pattern{pat(t, "lab.example.com")},
		},
	}
	return policy.Finish(p)
}

type testProxy struct {
	*Proxy
	ins   *fakeInserter
	store *learned.Store
}

// newTestProxy builds a proxy over p; Close and a goroutine-leak check
// run at cleanup.
func newTestProxy(t testing.TB, p *policy.Policy, ins *fakeInserter, mod func(*Options)) *testProxy {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	if ins == nil {
		ins = &fakeInserter{}
	}
	store := learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS)})
	opts := Options{Policy: p, Store: store, Inserter: ins}
	if mod != nil {
		mod(&opts)
	}
	px, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	return &testProxy{Proxy: px, ins: ins, store: store}
}

// ask runs one query through app's decision path, as its stub would.
func (tp *testProxy) ask(t testing.TB, app, name string, qtype uint16, edns bool) (*dns.Msg, Verdict) {
	t.Helper()
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		req.SetEdns0(1232, false)
	}
	tp.mu.Lock()
	rt := tp.runtimes[app]
	tp.mu.Unlock()
	if rt == nil {
		t.Fatalf("no runtime for app %q", app)
	}
	resp, v := tp.answer(context.Background(), rt, req, false)
	if resp != nil {
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
	}
	return resp, v
}

func edeOf(m *dns.Msg) *dns.EDNS0_EDE {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

// freePort finds a port free for UDP and TCP on 127.0.0.1 and ::1.
func freePort(t testing.TB) uint16 {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for _, a := range []string{"127.0.0.1", "[::1]"} {
			for _, nw := range []string{"udp", "tcp"} {
				addr := net.JoinHostPort(strings.Trim(a, "[]"), strconv.Itoa(port))
				if nw == "udp" {
					c, err := net.ListenPacket(nw, addr)
					if err != nil {
						ok = false
						continue
					}
					c.Close()
				} else {
					c, err := net.Listen(nw, addr)
					if err != nil {
						ok = false
						continue
					}
					c.Close()
				}
			}
		}
		if ok {
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// exchange sends a query to a stub over the network, as an app would.
func exchange(t testing.TB, addr string, proto, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	if edns {
		req.SetEdns0(1232, false)
	}
	resp, _, err := c.Exchange(req, addr)
	if err != nil {
		t.Fatalf("exchange %s %s via %s/%s: %v", name, dns.Type(qtype), proto, addr, err)
	}
	return resp
}
