package dnsproxy

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// bytesExchanger answers every question with fixed bytes, through the same
// checks a real upstream answer goes through.
type bytesExchanger struct {
	mu   sync.Mutex
	wire []byte
}

func (b *bytesExchanger) exchange(ctx context.Context, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	b.mu.Lock()
	wire := append([]byte(nil), b.wire...)
	b.mu.Unlock()
	const id = 0x4242
	if len(wire) >= 2 {
		binary.BigEndian.PutUint16(wire, id)
	}
	return checkAnswer(wire, q, id)
}

func packed(t testing.TB, m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seedAnswer(t testing.TB, name string, qtype uint16, rrs ...string) []byte {
	q := new(dns.Msg).SetQuestion(name, qtype)
	m := new(dns.Msg).SetReply(q)
	for _, s := range rrs {
		rr := mustRR(t, s)
		if strings.Contains(s, " SRV ") || (strings.Contains(s, " A ") && qtype == dns.TypePTR) {
			m.Extra = append(m.Extra, rr)
		} else {
			m.Answer = append(m.Answer, rr)
		}
	}
	return packed(t, m)
}

// FuzzQuery sends arbitrary bytes to the stub's decision path, with an
// arbitrary upstream answer: no panic, every reply packs and carries the
// query's ID, a blocked name learns nothing, and nothing private is learned
// for a public name.
func FuzzQuery(f *testing.F) {
	query := func(name string, qtype uint16, edns bool) []byte {
		m := new(dns.Msg).SetQuestion(name, qtype)
		if edns {
			m.SetEdns0(1232, true)
		}
		return packed(f, m)
	}
	f.Add(query("api.example.com.", dns.TypeA, true), seedAnswer(f, "api.example.com.", dns.TypeA,
		"api.example.com. 60 IN CNAME edge.example.net.", "edge.example.net. 30 IN A 198.18.1.1"))
	f.Add(query("x.cdn.example.", dns.TypeAAAA, false), seedAnswer(f, "x.cdn.example.", dns.TypeAAAA, "x.cdn.example. 5 IN AAAA 2001:db8::1"))
	f.Add(query("rebind.cdn.example.", dns.TypeA, true), seedAnswer(f, "rebind.cdn.example.", dns.TypeA, "rebind.cdn.example. 5 IN A 10.0.0.1"))
	f.Add(query("_ipp._tcp.example.com.", dns.TypePTR, false), seedAnswer(f, "_ipp._tcp.example.com.", dns.TypePTR,
		"_ipp._tcp.example.com. 60 IN PTR p._ipp._tcp.example.com.", "p._ipp._tcp.example.com. 60 IN SRV 0 0 631 printer.example.com.", "printer.example.com. 60 IN A 198.18.4.4"))
	f.Add(query("evil.example.", dns.TypeA, true), []byte{})
	f.Add([]byte{0, 1, 2}, []byte{0, 1, 2})

	ex := &bytesExchanger{}
	up := testPolicy(f, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")})
	up.DNS.RateLimit, up.DNS.Burst, up.DNS.MaxInFlight = 1e9, 1e9, 1e6
	store := learned.New(learned.Options{Limits: learned.Limits{MaxPerApp: 1000, MaxPerName: 50}})
	ins := &discardInserter{}
	px, err := New(Options{Policy: up, Store: store, Inserter: ins, exchanger: ex})
	if err != nil {
		f.Fatal(err)
	}
	defer px.Close()
	rt := px.runtimes["weather"]
	// The same policy in audit mode, for queries with an odd ID: what it
	// answers that enforce mode would refuse must open nothing.
	aup := testPolicy(f, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")})
	aup.DNS.RateLimit, aup.DNS.Burst, aup.DNS.MaxInFlight = 1e9, 1e9, 1e6
	aup.Mode = policy.ModeAudit
	apx, err := New(Options{Policy: policy.Finish(aup), Store: store, Inserter: ins, exchanger: ex, Audit: discardAuditor{}})
	if err != nil {
		f.Fatal(err)
	}
	defer apx.Close()
	art := apx.runtimes["weather"]

	f.Fuzz(func(t *testing.T, qwire, awire []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(qwire); err != nil {
			return // the server answers FORMERR or nothing before we see it
		}
		ex.mu.Lock()
		ex.wire = awire
		ex.mu.Unlock()
		ins.reset()
		p, r := px, rt
		if req.Id&1 == 1 {
			p, r = apx, art
		}
		resp, v := p.answer(context.Background(), r, req, false)
		if resp == nil {
			if v != Invalid {
				t.Fatalf("no reply with verdict %v", v)
			}
			return
		}
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("reply ID %d response %v, query ID %d", resp.Id, resp.Response, req.Id)
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v", err)
		}
		resp.Truncate(clientUDPSize(req))
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("truncated reply does not pack: %v", err)
		}
		els := ins.taken()
		if v != Allowed && len(els) > 0 {
			t.Fatalf("verdict %v inserted %v", v, els)
		}
		for _, e := range els {
			if e.App != "weather" {
				t.Fatalf("inserted for app %q", e.App)
			}
			if !isPublicAddr(e.Addr) {
				names := store.Names("weather", e.Addr)
				exempt := false
				for _, n := range names {
					if !isPublicName(n) || privateAllowed(up, n) {
						exempt = true
					}
				}
				if !exempt && len(names) > 0 {
					t.Fatalf("private %s learned for public names %v", e.Addr, names)
				}
			}
		}
	})
}

type discardAuditor struct{}

func (discardAuditor) RecordDNS(audit.DNSQuery) {}

type discardInserter struct {
	mu  sync.Mutex
	got []learned.Element
}

func (d *discardInserter) Allow(elems []learned.Element) error {
	d.mu.Lock()
	d.got = append(d.got, elems...)
	d.mu.Unlock()
	return nil
}

func (d *discardInserter) reset() {
	d.mu.Lock()
	d.got = nil
	d.mu.Unlock()
}

func (d *discardInserter) taken() []learned.Element {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.got
}

// FuzzExtract walks arbitrary answers for CNAME chains, DNS-SD records and
// private addresses: no panic, bounded work, and only the asked name or
// SRV targets are learned, never a private address for a public name.
func FuzzExtract(f *testing.F) {
	f.Add("api.example.com", uint16(dns.TypeA), false, seedAnswer(f, "api.example.com.", dns.TypeA,
		"api.example.com. 60 IN CNAME a.example.net.", "a.example.net. 60 IN CNAME b.example.net.", "b.example.net. 60 IN CNAME a.example.net.", "b.example.net. 9 IN A 198.18.0.1"))
	f.Add("_ipp._tcp.example.com", uint16(dns.TypePTR), true, seedAnswer(f, "_ipp._tcp.example.com.", dns.TypePTR,
		"_ipp._tcp.example.com. 60 IN PTR p._ipp._tcp.example.com.", "p._ipp._tcp.example.com. 60 IN SRV 0 0 631 printer.example.com.", "printer.example.com. 60 IN A 10.0.0.4"))
	f.Add("x.lan", uint16(dns.TypeAAAA), false, seedAnswer(f, "x.lan.", dns.TypeAAAA, "x.lan. 60 IN AAAA fd00::1"))
	f.Fuzz(func(t *testing.T, name string, qtype uint16, service bool, wire []byte) {
		resp := new(dns.Msg)
		if err := resp.Unpack(wire); err != nil {
			return
		}
		name = canonical(name)
		q := query{app: "weather", name: name, qtype: qtype, service: service}
		if service {
			q.via = name
		}
		ls, err := extract(q, resp, func(n string) bool { return n == "allowed.example" })
		if err != nil {
			if len(ls) != 0 {
				t.Fatalf("refused answer still learned %v", ls)
			}
			return
		}
		for _, l := range ls {
			if l.Name != name && !service {
				t.Fatalf("learned %q for question %q", l.Name, name)
			}
			if l.Name != name && l.Grant <= 0 && len(l.Addrs) == 0 {
				t.Fatalf("empty learning %+v", l)
			}
			for _, at := range l.Addrs {
				if !isPublicAddr(at.Addr) && isPublicName(l.Name) && isPublicName(name) && l.Name != "allowed.example" && name != "allowed.example" {
					t.Fatalf("private %s learned for public %q", at.Addr, l.Name)
				}
			}
		}
	})
}
