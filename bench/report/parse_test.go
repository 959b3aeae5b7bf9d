package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{sig(956.4), "956"},
		{sig(26.04), "26"},
		{sig(12.34), "12.3"},
		{sig(1.304), "1.3"},
		{sig(0.0891), "0.089"},
		{sig(math.NaN()), none},
		{dur(1.135), "1.14 s"},
		{dur(0.0261), "26.1 ms"},
		{dur(135e-6), "135 µs"},
		{dur(75e-9), "75 ns"},
		{us(412), "412 µs"},
		{ms(2264.8), "2.26 s"},
		{count(8036.4), "8,036"},
		{count(1234567), "1,234,567"},
		{count(12), "12"},
		{ratio(8036, 4628), "1.74×"},
		{ratio(16.2, 1), "16.2×"},
		{ratio(1, 0), none},
		{mib(14776), "14.4 MiB"},
		{mb(12570786), "12.6 MB"},
		{spread(sample{7.8, 7.2, 11.3}, sig), "7.8 (7.2–11.3)"},
		{spread(sample{3}, sig), "3"},
		{spread(nil, sig), none},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := table{Head: []string{"a", "b"}}
	tb.add("x|y", "1")
	want := "| a | b |\n|---|---:|\n| x\\|y | 1 |\n"
	if diff := cmp.Diff(want, tb.Markdown()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := (table{Head: []string{"a"}}).Markdown(); got != "" {
		t.Errorf("empty table: got %q, want nothing", got)
	}
}

func TestParseBench(t *testing.T) {
	text := `goos: linux
BenchmarkIdleRSS/apps=10/learned=0
    bench_linux_test.go:58: time=... level=INFO msg="firewall table installed" apps=10 took=15.713456ms
    bench_linux_test.go:58: time=... level=INFO msg=ready api="/tmp/x" took=44.801963ms
BenchmarkIdleRSS/apps=10/learned=0-2         	       1	2112676878 ns/op	        14.43 MiB-RSS-idle	        10.51 ms-reload
BenchmarkThroughput/no-table-2   	       1	3012345678 ns/op	         7.8 Gbit/s
BenchmarkThroughput/no-table-2   	       1	3012345678 ns/op	         9.1 Gbit/s
BenchmarkMatcher/miss-2              	 5975739	        65.65 ns/op	       0 B/op	       0 allocs/op
PASS
`
	b := parseBench(text)
	for _, tc := range []struct {
		name, unit string
		want       sample
	}{
		{"BenchmarkIdleRSS/apps=10/learned=0", "MiB-RSS-idle", sample{14.43}},
		{"BenchmarkIdleRSS/apps=10/learned=0", "ms-reload", sample{10.51}},
		{"BenchmarkThroughput/no-table", "Gbit/s", sample{7.8, 9.1}},
		{"BenchmarkMatcher/miss", "allocs/op", sample{0}},
		{"BenchmarkMatcher/miss", "ns/op", sample{65.65}},
	} {
		if diff := cmp.Diff(tc.want, b.get(tc.name, tc.unit)); diff != "" {
			t.Errorf("%s %s (-want +got):\n%s", tc.name, tc.unit, diff)
		}
	}
	if got := b.logDuration("BenchmarkIdleRSS/apps=10/learned=0", "msg=ready", "took"); math.Abs(got-0.044801963) > 1e-9 {
		t.Errorf("ready took %v, want 0.0448", got)
	}
	if got := b.logDuration("BenchmarkIdleRSS/apps=10/learned=0", "no such line", "took"); !math.IsNaN(got) {
		t.Errorf("missing log line: got %v, want NaN", got)
	}
}

func TestParseDNS(t *testing.T) {
	text := "# lists: latency 2000 names (1 outstanding), throughput 50000 names (100 outstanding); load 1 1 1\n" +
		"## run 1\n" +
		"upstream-latency\tqps=310\tsent=2000\tcompleted=2000\tlost=0\tp50=42\tp90=196\tp99=870\tp99.9=10101\tmax=92257\tNOERROR=2000\n" +
		"pinhole-latency\tqps=114\tsent=2000\tcompleted=2000\tlost=0\tp50=412\tp90=1019\tp99=2782\tp99.9=17542\tmax=41742\tNOERROR=2000\n" +
		"pinhole-latency\tqps=118\tsent=2000\tcompleted=2000\tlost=2\tp50=416\tp90=1000\tp99=2000\tp99.9=3000\tmax=4000\tNOERROR=1998\n" +
		"dnsmasq set elements: 120000\n" +
		`pinhole after run: {"learned_entries":120000,"rss_kib":80088,"insert":{"batches":23326,"elements":120000,"hold":{"p50_ns":5000000,"p99_ns":25000000}}}` + "\n" +
		"learned 100000 addresses in 417ms (4168 ns each); elements 100000; RSS 10412 -> 54544 KiB (+44132 KiB, 452 B/address); heap in use 1152 -> 43472 KiB (433 B/address)\n"
	r := parseDNS(text)
	if diff := cmp.Diff(sample{412, 416}, r.runs["pinhole-latency"]["p50"]); diff != "" {
		t.Errorf("pinhole p50 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sample{0, 2}, r.runs["pinhole-latency"]["lost"]); diff != "" {
		t.Errorf("pinhole lost (-want +got):\n%s", diff)
	}
	if r.lists == "" || len(r.pinhole) != 1 || r.pinhole[0].Insert.Batches != 23326 || r.pinhole[0].RSSKiB != 80088 {
		t.Errorf("header or stats not parsed: lists %q, stats %+v", r.lists, r.pinhole)
	}
	want := &storeMemory{N: 100000, Took: 0.417, RSSBefore: 10412, RSSAfter: 54544, RSSKiB: 44132, RSSPerAddr: 452, HeapPerAddr: 433}
	if diff := cmp.Diff(want, r.store, cmp.AllowUnexported(storeMemory{})); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sample{120000}, r.dnsmasqSet); diff != "" {
		t.Errorf("set elements (-want +got):\n%s", diff)
	}
	s := (&doc{parts: map[string]partStatus{"dns": {Name: "dns"}}}).dnsSection(r)
	if s.Outstanding != "100" || s.AddedP50 != "372 µs" {
		t.Errorf("outstanding %q, added p50 %q; want 100 and 372 µs", s.Outstanding, s.AddedP50)
	}
}

func TestParseRaceTest(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       *raceResult
	}{
		{"pass", "=== RUN   TestRace\n    lab_linux_test.go:520: race: 10000 cycles in 6.817396373s; SYN retransmissions 0, active opens 10000, failed attempts 0; inserts {Batches:10000}\n--- PASS: TestRace (7.54s)\n",
			&raceResult{Cycles: 10000, Seconds: 6.817396373, ActiveOpens: 10000, Passed: true}},
		{"fail", "    lab_linux_test.go:520: race: 1000 cycles in 1.5s; SYN retransmissions 3, active opens 1000, failed attempts 2; inserts {}\n    lab_linux_test.go:523: 0 resolve and 2 connect failures in 1000 cycles: [...]\n--- FAIL: TestRace (2s)\n",
			&raceResult{Cycles: 1000, Seconds: 1.5, SynRetrans: 3, ActiveOpens: 1000, AttemptFails: 2, ConnectFails: 2}},
		{"absent", "ok\n", nil},
	} {
		if diff := cmp.Diff(tc.want, parseRaceTest(tc.text)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestParsePeers(t *testing.T) {
	text := "rss\tdnsmasq\tidle\t6308\n" +
		`race	dnsmasq	{"cycles":10000,"resolve_fails":0,"connect_fails":1,"syn_retrans":2,"active_opens":10000,"attempt_fails":1,"seconds":5.0}` + "\n" +
		"load\tdnsmasq\tcompleted=100000 qps=6383.19\n" +
		"rss\tdnsmasq\tloaded\t7132\n" +
		"elements\tdnsmasq\t110000\n" +
		`stats	pinhole	{"learned_entries":102971,"rss_kib":68572}` + "\n"
	p := parsePeers(text)
	want := &raceResult{Cycles: 10000, ConnectFails: 1, SynRetrans: 2, ActiveOpens: 10000, AttemptFails: 1, Seconds: 5}
	if diff := cmp.Diff(want, p.race["dnsmasq"]); diff != "" {
		t.Errorf("race (-want +got):\n%s", diff)
	}
	if p.rssIdle["dnsmasq"] != 6308 || p.rssLoad["dnsmasq"] != 7132 || p.elements["dnsmasq"] != 110000 ||
		p.load["dnsmasq"]["completed"] != "100000" || p.stub == nil || p.stub.LearnedEntries != 102971 {
		t.Errorf("parsed %+v", p)
	}
}

func TestParseApplyAndSizes(t *testing.T) {
	a := parseApply("apply\tapps=1\tpinhole_ms=2.4\tnft_ms=19.3\napply\tapps=1\tpinhole_ms=2.6\tnft_ms=21\n" +
		"# apps=1: 11 chains, 49 rules, 12 named sets and maps, 10 elements; nft text 7092 bytes; medians pinhole 2.5 ms, nft -f 20.1 ms\n")
	if diff := cmp.Diff([]int{1}, a.counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sample{19.3, 21}, a.nft[1]); diff != "" {
		t.Errorf("nft (-want +got):\n%s", diff)
	}
	if want := "11 chains, 49 rules, 12 named sets and maps, 10 elements; nft text 7092 bytes"; a.table[1] != want {
		t.Errorf("table %q, want %q", a.table[1], want)
	}
	z := parseSizes("/x/dist/linux-armv7/pinholed  11993250 bytes\n# dnsmasq /usr/sbin/dnsmasq 484472 bytes\n# dnsmasq-libs 22 libraries 9000000 bytes\n")
	if z.bins["linux-armv7/pinholed"] != 11993250 || z.dnsmasq != 484472 || z.dnsmasqLibs != 22 || z.libsBytes != 9e6 {
		t.Errorf("sizes %+v", z)
	}
}

// TestRenderMissingParts: a run where parts failed or did not run still
// renders, and says so instead of showing figures.
func TestRenderMissingParts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("machine.txt", "date: 2026-11-29 17:54 UTC\ncommit: abc\ncores: 2\nwall_seconds: 621\n")
	write("parts.tsv", "dns\t1\t12.5\nrace\t0\t10.3\n")
	write("race.txt", "    lab_linux_test.go:520: race: 10000 cycles in 6.8s; SYN retransmissions 0, active opens 10000, failed attempts 0; inserts {}\n--- PASS: TestRace (7.54s)\n")
	d, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := render(d)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{
		"**Part `dns` failed in this run** (exit status 1)",
		"**Not measured in this run**: part `firewall` did not run.",
		"| cycles | 10,000 | — | — |",
		"| wall time | 10 min 21 s |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(text, "<no value>") || strings.Contains(text, "\n\n\n") {
		t.Errorf("report has <no value> or a run of blank lines:\n%s", text)
	}
}
