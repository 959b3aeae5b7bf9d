// Command dnsbench is the harness of bench/dns.sh: it runs pinhole's DNS
// stubs with the real firewall in the namespace it is started in, turns
// dnsperf's per-query output into percentiles, and measures the memory of
// a store holding many learned addresses. It refuses to run in the
// machine's own network namespace.
//
//	dnsbench serve -upstream 198.18.255.53:53 -uid 40100 -port 5400
//	dnsbench table -upstream 198.18.255.53:53 -uid 40100
//	dnsperf -v ... | dnsbench stats -label pinhole
//	dnsbench rss -n 100000
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pinhole-net/pinhole/internal/dnsproxy"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/netns"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dnsbench serve|stats|rss [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "table":
		err = table(os.Args[2:])
	case "stats":
		err = stats(os.Args[2:], os.Stdin, os.Stdout)
	case "rss":
		err = rss(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func refuseInitialNetns() error {
	initial, err := netns.IsInitial()
	if err != nil {
		return err
	}
	if initial {
		return errors.New("refusing to run in the initial network namespace; bench/dns.sh starts it in its own")
	}
	return nil
}

// benchPolicy: app "bench" (by UID) may resolve *.bench.example on any
// port through its stub; pinholed reaches the upstream; unmanaged traffic
// is allowed so that the script's own tools keep working.
func benchPolicy(upstream netip.AddrPort, uid uint32, port uint16) *policy.Policy {
	pat, _ := hostname.ParsePattern("*.bench.example")
	return policy.Finish(&policy.Policy{
		Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedAllow, SystemMark: policy.DefaultSystemMark,
		NFLOGGroup: 100, LogRate: 100, LogBurst: 100,
		Apps: []*policy.App{{Name: "bench", Identity: policy.Identity{Kind: policy.ByUID, UID: uid}, DNSPort: port,
			Hosts: []policy.HostRule{{Pattern: pat, Source: "bench"}}}},
		System: &policy.App{Name: policy.SystemName, Identity: policy.Identity{Kind: policy.ByMark, Mark: policy.DefaultSystemMark},
			Addrs: []policy.AddrRule{{Addr: upstream.Addr(), Ports: policy.BothProtocols(53), Source: "upstream"}}},
		DNS: policy.DNS{
			Upstreams: []netip.AddrPort{upstream}, TTLFloor: time.Second, TTLCeiling: time.Hour, Grace: 10 * time.Second,
			MaxPerApp: 500000, MaxPerName: 64, InsertTimeout: 100 * time.Millisecond, QueryTimeout: 2 * time.Second,
			RateLimit: 1e6, Burst: 1e6, MaxInFlight: 4096,
		},
	})
}

// table installs the same firewall table as serve, without stubs, and
// holds it until SIGTERM, so that the other runs pay for the same ruleset
// on every packet and dnsmasq can fill the app's set.
func table(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	up := fs.String("upstream", "", "upstream DNS server address:port")
	uid := fs.Uint("uid", 40100, "UID of the benchmark app")
	fs.Parse(args)
	if err := refuseInitialNetns(); err != nil {
		return err
	}
	upstream, err := netip.ParseAddrPort(*up)
	if err != nil {
		return fmt.Errorf("-upstream: %w", err)
	}
	fw, err := firewall.New(firewall.Options{})
	if err != nil {
		return err
	}
	defer fw.Close()
	defer fw.Remove()
	if err := fw.Apply(benchPolicy(upstream, uint32(*uid), 5400), nil); err != nil {
		return err
	}
	fmt.Println("ready")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}

// serve runs the stubs until SIGTERM; SIGUSR1 prints a JSON line of stats.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	up := fs.String("upstream", "", "upstream DNS server address:port")
	uid := fs.Uint("uid", 40100, "UID of the benchmark app")
	port := fs.Uint("port", 5400, "stub port")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	insert := fs.Bool("insert", true, "insert learned addresses into the kernel (false: diagnosis only, to tell forwarding from insertion)")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := refuseInitialNetns(); err != nil {
		return err
	}
	upstream, err := netip.ParseAddrPort(*up)
	if err != nil {
		return fmt.Errorf("-upstream: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := benchPolicy(upstream, uint32(*uid), uint16(*port))
	fw, err := firewall.New(firewall.Options{Logger: log})
	if err != nil {
		return err
	}
	defer fw.Close()
	defer fw.Remove()
	store := learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS), Logger: log})
	if err := fw.Apply(p, nil); err != nil {
		return err
	}
	var ins dnsproxy.Inserter = fw
	if !*insert {
		ins = discard{}
	}
	px, err := dnsproxy.New(dnsproxy.Options{Policy: p, Store: store, Inserter: ins, Logger: log})
	if err != nil {
		return err
	}
	defer px.Close()
	if err := px.Start(); err != nil {
		return err
	}
	fmt.Println("ready")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for s := range sigs {
		if s != syscall.SIGUSR1 {
			return nil
		}
		runtime.GC()
		debug.FreeOSMemory()
		st := px.Stats()
		var entries int
		for _, a := range st.Apps {
			entries += a.Learned.Entries
		}
		out := map[string]any{
			"learned_entries": entries, "insert": st.Insert, "rss_kib": vmRSS(),
			"heap_inuse_kib": heapInuse() / 1024, "goroutines": runtime.NumGoroutine(),
		}
		js, _ := json.Marshal(out)
		fmt.Println(string(js))
	}
	return nil
}

// discard is an Inserter that inserts nothing.
type discard struct{}

func (discard) Allow([]firewall.Element) error  { return nil }
func (discard) Revoke([]firewall.Element) error { return nil }

func vmRSS() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rss learns n distinct names with one address each into a store, the way
// answers would, and reports the process's memory before and after.
func rss(args []string) error {
	fs := flag.NewFlagSet("rss", flag.ExitOnError)
	n := fs.Int("n", 100000, "learned addresses")
	fs.Parse(args)
	p := benchPolicy(netip.MustParseAddrPort("198.18.255.53:53"), 40100, 5400)
	store := learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS)})
	runtime.GC()
	debug.FreeOSMemory()
	rss0, heap0 := vmRSS(), heapInuse()
	start := time.Now()
	for i := range *n {
		a := netip.AddrFrom4([4]byte{198, byte(18 + i>>16), byte(i >> 8), byte(i)})
		els := store.Learn(learned.Learning{App: "bench", Name: fmt.Sprintf("n-%d.bench.example", i), Addrs: []learned.AddrTTL{{Addr: a, TTL: time.Hour}}})
		store.Acknowledge(els, store.Now())
	}
	took := time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	rss1, heap1 := vmRSS(), heapInuse()
	els := store.Elements(p, time.Now())
	fmt.Printf("learned %d addresses in %v (%.0f ns each); elements %d; RSS %d -> %d KiB (+%d KiB, %.0f B/address); heap in use %d -> %d KiB (%.0f B/address)\n",
		*n, took.Round(time.Millisecond), float64(took.Nanoseconds())/float64(*n), len(els),
		rss0, rss1, rss1-rss0, float64(rss1-rss0)*1024/float64(*n), heap0/1024, heap1/1024, float64(heap1-heap0)/float64(*n))
	runtime.KeepAlive(store)
	return nil
}

// stats reads dnsperf -v output and prints one tab-separated line: label,
// queries per second, completed, lost, and latency percentiles in µs.
func stats(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ExitOnError)
	label := fs.String("label", "", "row label")
	fs.Parse(args)
	var lat []float64
	var qps float64
	var sent, completed, lost int
	rcodes := map[string]int{}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && f[0] == ">":
			v, err := strconv.ParseFloat(f[4], 64)
			if err == nil {
				lat = append(lat, v*1e6)
			}
			rcodes[f[1]]++
		case strings.HasPrefix(strings.TrimSpace(line), "Queries per second:"):
			qps, _ = strconv.ParseFloat(f[len(f)-1], 64)
		case strings.HasPrefix(strings.TrimSpace(line), "Queries sent:"):
			sent, _ = strconv.Atoi(f[2])
		case strings.HasPrefix(strings.TrimSpace(line), "Queries completed:"):
			completed, _ = strconv.Atoi(f[2])
		case strings.HasPrefix(strings.TrimSpace(line), "Queries lost:"):
			lost, _ = strconv.Atoi(f[2])
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return math.NaN()
		}
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return lat[max(i, 0)]
	}
	var rc []string
	for k, v := range rcodes {
		rc = append(rc, fmt.Sprintf("%s=%d", k, v))
	}
	slices.Sort(rc)
	fmt.Fprintf(out, "%s\tqps=%.0f\tsent=%d\tcompleted=%d\tlost=%d\tp50=%.0f\tp90=%.0f\tp99=%.0f\tp99.9=%.0f\tmax=%.0f\t%s\n",
		*label, qps, sent, completed, lost, pct(0.5), pct(0.9), pct(0.99), pct(0.999), pct(1), strings.Join(rc, ","))
	return nil
}
