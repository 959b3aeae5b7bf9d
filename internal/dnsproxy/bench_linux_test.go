package dnsproxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// BenchmarkAllow is the kernel side of insert-before-answer: one firewall
// transaction of n elements of one app, acknowledged; new=false refreshes
// the same elements, new=true adds fresh ones each time (the miss path).
func BenchmarkAllow(b *testing.B) {
	for _, fresh := range []bool{false, true} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("new=%v/elements=%d", fresh, n), func(b *testing.B) {
				netnstest.RequireDevice(b)
				fw, err := firewall.New(firewall.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer fw.Close()
				defer fw.Remove()
				p := policy.Finish(&policy.Policy{Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedAllow, SystemMark: policy.DefaultSystemMark, NFLOGGroup: 100,
					Apps: []*policy.App{{Name: "bench", Identity: policy.Identity{Kind: policy.ByUID, UID: 45678}}}})
				if err := fw.Apply(p, nil); err != nil {
					b.Fatal(err)
				}
				elems := make([]firewall.Element, n)
				for i := range elems {
					elems[i] = firewall.Element{App: "bench", Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Proto: policy.TCP, Port: 443, Timeout: time.Minute}
				}
				b.ResetTimer()
				i := 0
				for b.Loop() {
					if fresh {
						for j := range elems {
							i++
							elems[j].Addr = netip.AddrFrom4([4]byte{198, byte(18 + i>>16), byte(i >> 8), byte(i)})
						}
					}
					if err := fw.Allow(elems); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/element")
			})
		}
	}
}

// BenchmarkAnswer is the proxy's own cost per allowed query: decision,
// upstream exchange over loopback with an in-process server, learning and
// a no-op insert. BenchmarkUpstream is the same exchange without the proxy.
func BenchmarkAnswer(b *testing.B) {
	up := startUpstream(b, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{198, 18, 7, 7}})
		w.WriteMsg(m)
	})
	p := testPolicy(b, []netip.AddrPort{up.addr})
	p.DNS.RateLimit, p.DNS.Burst = 1e9, 1e9
	store := learned.New(learned.Options{Limits: learned.Limits{MaxPerApp: 1 << 20}})
	px, err := New(Options{Policy: p, Store: store, Inserter: &discardInserter{}})
	if err != nil {
		b.Fatal(err)
	}
	defer px.Close()
	rt := px.runtimes["weather"]
	req := new(dns.Msg).SetQuestion("a.cdn.example.", dns.TypeA)
	b.Run("proxy", func(b *testing.B) {
		for b.Loop() {
			if _, v := px.answer(context.Background(), rt, req, false); v != Allowed {
				b.Fatal(v)
			}
		}
	})
	b.Run("upstream", func(b *testing.B) {
		for b.Loop() {
			if _, err := px.fwd.Load().exchange(context.Background(), upstreamQuery(req), false); err != nil {
				b.Fatal(err)
			}
		}
	})
}
