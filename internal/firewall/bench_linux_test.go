package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func init() {
	netnstest.RegisterRole("tcp-sink", roleTCPSink)
	netnstest.RegisterRole("dial-loop", roleDialLoop)
}

// benchPolicy has n apps, half by uid and half by cgroup (fake ids), each
// with two literal addresses, one port-scoped address, a TCP server port
// and a DNS stub.
func benchPolicy(n int) *policy.Policy {
	p := &policy.Policy{Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedDeny, SystemMark: policy.DefaultSystemMark, NFLOGGroup: 100,
		System: &policy.App{Name: policy.SystemName, Identity: policy.Identity{Kind: policy.ByMark, Mark: policy.DefaultSystemMark},
			Addrs: []policy.AddrRule{{Addr: addr("198.18.0.53"), Ports: policy.BothProtocols(53)}}}}
	for i := range n {
		a := &policy.App{Name: fmt.Sprintf("app%04d", i), DNSPort: uint16(20000 + i), TCPServerPorts: []uint16{uint16(30000 + i)},
			Addrs: []policy.AddrRule{
				{Addr: netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})},
				{Addr: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})},
				{Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Ports: policy.BothProtocols(443)},
			}}
		if i%2 == 0 {
			a.Identity = policy.Identity{Kind: policy.ByUID, UID: uint32(50000 + i)}
		} else {
			a.Identity = policy.Identity{Kind: policy.ByCgroup, Cgroup: fmt.Sprintf("bench/app%04d", i)}
		}
		p.Apps = append(p.Apps, a)
	}
	return policy.Finish(p)
}

func benchFirewall(b *testing.B) *Firewall {
	b.Helper()
	netnstest.RequireDevice(b)
	next := uint64(1 << 40)
	f, err := New(Options{CgroupID: func(string) (uint64, error) { next++; return next, nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Remove(); f.Close() })
	return f
}

// BenchmarkApply replaces the whole table (one transaction) for 1, 100 and
// 1000 apps.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("apps=%d", n), func(b *testing.B) {
			f := benchFirewall(b)
			p := benchPolicy(n)
			for b.Loop() {
				if err := f.Apply(p, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchElements(n int, app string) []Element {
	out := make([]Element, n)
	for i := range out {
		out[i] = Element{App: app, Addr: netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), Timeout: time.Hour}
	}
	return out
}

// BenchmarkAllow adds (refreshing) n learned IPv4 elements to one app's set
// in one call: 1 and 16 are what a DNS answer brings, 10k and 100k bulk.
func BenchmarkAllow(b *testing.B) {
	for _, n := range []int{1, 16, 10000, 100000} {
		b.Run(fmt.Sprintf("elements=%d", n), func(b *testing.B) {
			f := benchFirewall(b)
			p := benchPolicy(1)
			elems := benchElements(n, "app0000")
			for b.Loop() {
				b.StopTimer()
				if err := f.Apply(p, nil); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := f.Allow(elems); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "elements/s")
		})
	}
}

// BenchmarkApplyLearned replaces the table with n learned elements in the
// same transaction (what a reload does).
func BenchmarkApplyLearned(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("elements=%d", n), func(b *testing.B) {
			f := benchFirewall(b)
			p := benchPolicy(1)
			elems := benchElements(n, "app0000")
			for b.Loop() {
				if err := f.Apply(p, elems); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// datapathVariants are the rulesets throughput and connection rate are
// measured through: none, and pinhole's table with 0, 1k and 100k learned
// elements in the app's set besides the server's address.
var datapathVariants = []struct {
	name  string
	table bool
	extra int
}{{"no-table", false, 0}, {"elements=0", true, 0}, {"elements=1k", true, 1000}, {"elements=100k", true, 100000}}

// setupDatapath returns a bed, an app allowed to reach the bed's public
// address, and a function that installs the variant's ruleset.
func setupDatapath(b *testing.B) (*netnstest.Bed, *netnstest.App, func(table bool, extra int)) {
	b.Helper()
	bed := netnstest.New(b)
	app := netnstest.NewApp(b, "bench")
	f := benchFirewall(b)
	p := policy.Finish(&policy.Policy{Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedDeny, SystemMark: policy.DefaultSystemMark, NFLOGGroup: 100,
		Apps: []*policy.App{{Name: "bench", Identity: policy.Identity{Kind: policy.ByUID, UID: app.UID}}}})
	install := func(table bool, extra int) {
		if !table {
			if err := f.Remove(); err != nil {
				b.Fatal(err)
			}
			return
		}
		elems := append(benchElements(extra, "bench"), Element{App: "bench", Addr: bed.PublicV4, Timeout: time.Hour})
		if err := f.Apply(p, elems); err != nil {
			b.Fatal(err)
		}
	}
	return bed, app, install
}

// BenchmarkThroughput runs iperf3 (TCP, 3 s) from the app to the internet
// namespace through each ruleset; run with -benchtime=1x.
func BenchmarkThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("needs iperf3")
	}
	bed, app, install := setupDatapath(b)
	srv := bed.Command(context.Background(), "iperf3", "-s", "-B", bed.PublicV4.String(), "-p", "5201")
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	netnstest.WaitFor(b, 10*time.Second, func() bool {
		return bed.Command(context.Background(), "sh", "-c", "ss -ltn | grep -q :5201").Run() == nil
	})
	for _, v := range datapathVariants {
		b.Run(v.name, func(b *testing.B) {
			install(v.table, v.extra)
			for b.Loop() {
				out, err := app.CommandAs(context.Background(), netnstest.Ident{UID: true}, "iperf3", "-c", bed.PublicV4.String(),
					"-p", "5201", "-t", "3", "-J").Output()
				if err != nil {
					b.Fatalf("iperf3: %v\n%s", err, out)
				}
				var res struct {
					End struct {
						SumReceived struct {
							BitsPerSecond float64 `json:"bits_per_second"`
						} `json:"sum_received"`
					} `json:"end"`
				}
				if err := json.Unmarshal(out, &res); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.End.SumReceived.BitsPerSecond/1e9, "Gbit/s")
			}
		})
	}
}

// BenchmarkConnectRate dials new TCP connections from the app for 3 s
// through each ruleset (every SYN goes through the app's chain and set
// lookup); run with -benchtime=1x.
func BenchmarkConnectRate(b *testing.B) {
	bed, app, install := setupDatapath(b)
	sink := bed.StartRole(b, "tcp-sink", netip.AddrPortFrom(bed.PublicV4, 9000).String())
	for _, v := range datapathVariants {
		b.Run(v.name, func(b *testing.B) {
			install(v.table, v.extra)
			for b.Loop() {
				s := app.StartRole(b, netnstest.Ident{UID: true}, "dial-loop", sink.Addr.String(), "3s")
				ev := s.WaitEvents(b, 1, 30*time.Second)
				s.Stop()
				var n, fails int
				fmt.Sscan(ev[0].Detail, &n, &fails)
				if fails*100 > n+fails {
					b.Errorf("%d of %d connects failed", fails, n+fails)
				}
				b.ReportMetric(float64(n)/3, "conn/s")
				b.ReportMetric(float64(fails), "failed")
			}
		})
	}
}

// roleTCPSink accepts connections and closes them.
func roleTCPSink(ctx context.Context, args []string, r *netnstest.Reporter) error {
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	r.Ready(args[0])
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

// roleDialLoop connects to args[0] over and over for args[1], closing each
// connection with a reset (no TIME_WAIT), and reports "connects failures".
func roleDialLoop(ctx context.Context, args []string, r *netnstest.Reporter) error {
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	r.Ready("dialing")
	var n, fails int
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err != nil {
			fails++
			continue
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
		n++
	}
	r.Event(netnstest.Event{Kind: "dial", Detail: strconv.Itoa(n) + " " + strconv.Itoa(fails)})
	<-ctx.Done()
	return nil
}
