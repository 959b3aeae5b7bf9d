package dnsproxy

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// revokingFake is a fake Inserter that also revokes, keeping a model of the
// kernel set: the elements allowed and not revoked since.
type revokingFake struct {
	fakeInserter
	mu      sync.Mutex
	kernel  map[firewall.Element]bool // keyed without Timeout
	revoked [][]firewall.Element
}

func (f *revokingFake) Allow(elems []firewall.Element) error {
	if err := f.fakeInserter.Allow(elems); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range elems {
		e.Timeout = 0
		f.kernel[e] = true
	}
	return nil
}

func (f *revokingFake) Revoke(elems []firewall.Element) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, append([]firewall.Element(nil), elems...))
	for _, e := range elems {
		delete(f.kernel, e)
	}
	return nil
}

func (f *revokingFake) addrs() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for e := range f.kernel {
		out = append(out, e.Addr)
	}
	return out
}

// scriptedExchanger answers A questions with the next address of its list
// for the name.
type scriptedExchanger struct {
	mu    sync.Mutex
	addrs map[string][]string // fqdn -> answers in turn
}

func (s *scriptedExchanger) exchange(_ context.Context, q *dns.Msg, _ bool) (*dns.Msg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := new(dns.Msg)
	r.SetReply(q)
	name := q.Question[0].Name
	if list := s.addrs[name]; len(list) > 0 {
		r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.ParseIP(list[0])})
		s.addrs[name] = list[1:]
	} else {
		r.Rcode = dns.RcodeNameError
	}
	return r, nil
}

// TestEvictionRevokes: when the per-name cap evicts an address, its element
// leaves the kernel after the new one is in, unless another name of the
// app still opens it.
func TestEvictionRevokes(t *testing.T) {
	p := testPolicy(t, nil)
	p.DNS.MaxPerName = 1
	p = policy.Finish(p)
	ex := &scriptedExchanger{addrs: map[string][]string{
		"x.cdn.example.": {"198.18.2.1", "198.18.2.2", "198.18.2.3"},
		"y.cdn.example.": {"198.18.2.2"},
	}}
	ins := &revokingFake{kernel: map[firewall.Element]bool{}}
	store := learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS)})
	px, err := New(Options{Policy: p, Store: store, Inserter: ins, exchanger: ex})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	tp := &testProxy{Proxy: px, store: store}
	sortAddrs := cmpopts.SortSlices(func(a, b netip.Addr) bool { return a.Less(b) })
	eq := cmpopts.EquateComparable(netip.Addr{})
	ask := func(name string, want ...string) {
		t.Helper()
		if _, v := tp.ask(t, "weather", name, dns.TypeA, false); v != Allowed {
			t.Fatalf("%s: verdict %v", name, v)
		}
		var w []netip.Addr
		for _, s := range want {
			w = append(w, netip.MustParseAddr(s))
		}
		if diff := cmp.Diff(w, ins.addrs(), sortAddrs, eq); diff != "" {
			t.Errorf("kernel after %s (-want +got):\n%s", name, diff)
		}
	}
	ask("x.cdn.example", "198.18.2.1")
	ask("x.cdn.example", "198.18.2.2")               // evicts .1
	ask("y.cdn.example", "198.18.2.2")               // .2 for a second name
	ask("x.cdn.example", "198.18.2.2", "198.18.2.3") // evicts x's .2, which y keeps
	if st := px.Stats().Insert; st.Revoked != 1 || st.RevokeErrors != 0 {
		t.Errorf("insert stats %+v, want 1 revoked", st)
	}
	want := [][]firewall.Element{{{App: "weather", Addr: netip.MustParseAddr("198.18.2.1")}}}
	if diff := cmp.Diff(want, ins.revoked, eq); diff != "" {
		t.Errorf("revocations (-want +got):\n%s", diff)
	}
}
