// Command report turns the raw output of one bench/run into
// docs/benchmarks.md: the figures come from the run's directory, the
// explanations from benchmarks.md.tmpl.
//
//	go run ./bench/report -results bench/results/latest -out docs/benchmarks.md
package main

import (
	"bytes"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
)

//go:embed benchmarks.md.tmpl
var docTemplate string

func main() {
	results := flag.String("results", "bench/results/latest", "directory of one bench/run")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write")
	flag.Parse()
	if err := run(*results, *out); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(results, out string) error {
	dir, err := filepath.EvalSymlinks(results)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	d, err := load(dir)
	if err != nil {
		return err
	}
	text, err := render(d)
	if err != nil {
		return err
	}
	return os.WriteFile(out, text, 0o644)
}

func render(d *doc) ([]byte, error) {
	t, err := template.New("benchmarks.md").Parse(docTemplate)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	// No run of blank lines where an optional part was left out.
	text := b.String()
	for strings.Contains(text, "\n\n\n") {
		text = strings.ReplaceAll(text, "\n\n\n", "\n\n")
	}
	return []byte(text), nil
}

// doc is what the template sees.
type doc struct {
	Stamp   string // name of the results directory
	Machine map[string]string
	Run     table  // the machine and the run
	Parts   string // per-part durations
	Names   string // the parts that ran
	Wall    string
	Glance  table

	DNS      dnsSection
	Race     raceSection
	Datapath datapathSection
	Apply    applySection
	Memory   memorySection
	Sizes    sizesSection
	Micro    microSection

	dir   string
	parts map[string]partStatus
}

// missing says why a part's figures are absent, "" when it ran fine.
func (d *doc) missing(part string) string {
	st, ok := d.parts[part]
	switch {
	case !ok:
		return fmt.Sprintf("**Not measured in this run**: part `%s` did not run.", part)
	case st.Status != 0:
		return fmt.Sprintf("**Part `%s` failed in this run** (exit status %d); what it measured before failing is shown, the rest is marked %s. Its output is in `bench/results/%s/%s.err`.",
			part, st.Status, none, d.Stamp, part)
	}
	return ""
}

func load(dir string) (*doc, error) {
	m, err := readKV(filepath.Join(dir, "machine.txt"))
	if err != nil {
		return nil, err
	}
	parts, err := readParts(filepath.Join(dir, "parts.tsv"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	d := &doc{Stamp: filepath.Base(dir), Machine: m, dir: dir, parts: map[string]partStatus{}}
	for _, p := range parts {
		d.parts[p.Name] = p
	}
	d.runTable(parts)

	dns := parseDNS(readPart(dir, "dns"))
	peers := parsePeers(readPart(dir, "peers"))
	race := parseRaceTest(readPart(dir, "race"))
	fw := parseBench(readPart(dir, "firewall"))
	daemon := parseBench(readPart(dir, "daemon"))
	apply := parseApply(readPart(dir, "apply"))
	sizes := parseSizes(readPart(dir, "sizes"))
	micro := parseBench(readPart(dir, "micro"))

	d.DNS = d.dnsSection(dns)
	d.Race = d.raceSection(race, peers)
	d.Datapath = d.datapathSection(fw)
	d.Apply = d.applySection(apply, fw)
	d.Memory = d.memorySection(daemon, peers, dns)
	d.Sizes = d.sizesSection(sizes)
	d.Micro = d.microSection(micro)
	d.glance()
	return d, nil
}

func (d *doc) runTable(parts []partStatus) {
	m := d.Machine
	d.Run = table{Head: []string{"", ""}, Left: true}
	d.Run.add("date", m["date"])
	commit := "`" + m["commit"] + "`"
	if u := strings.TrimSpace(m["uncommitted"]); u != "" {
		commit += " with uncommitted changes in " + strings.Join(strings.Fields(u), ", ")
	}
	if e := m["commit_end"]; e != "" && e != m["commit"] {
		commit += " (HEAD moved to `" + e + "` during the run; each part built the tree as it was when the part started)"
	}
	d.Run.add("commit", commit)
	d.Run.add("machine", fmt.Sprintf("%s, %s cores, %s RAM", m["cpu"], m["cores"], m["memory"]))
	d.Run.add("system", fmt.Sprintf("Linux %s, %s", m["kernel"], m["os"]))
	d.Run.add("Go", m["go"])
	d.Run.add("peers and tools", fmt.Sprintf("dnsmasq %s, %s, dnsperf %s, iperf3 %s", m["dnsmasq"], m["nft"], m["dnsperf"], m["iperf3"]))
	d.Run.add("load average (1, 5, 15 min)", fmt.Sprintf("%s before, %s after", m["load_before"], orNone(m["load_after"])))
	d.Wall = dur(num(m["wall_seconds"]))
	if w := num(m["wall_seconds"]); !bad(w) {
		d.Wall = fmt.Sprintf("%d min %02d s", int(w)/60, int(w)%60)
	}
	d.Run.add("wall time", d.Wall)
	d.Run.add("repetitions", "`"+m["settings"]+"`")
	var ps, names []string
	for _, p := range parts {
		names = append(names, "`"+p.Name+"`")
		s := fmt.Sprintf("%s %s", p.Name, dur(p.Seconds))
		if p.Status != 0 {
			s += fmt.Sprintf(" (failed, exit status %d)", p.Status)
		}
		ps = append(ps, s)
	}
	d.Parts = strings.Join(ps, ", ")
	d.Names = strings.Join(names, ", ")
	d.Run.add("parts", d.Parts)
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// dnsSection: bench/dns.sh, (a) upstream, (b) pinhole, (c) dnsmasq.
type dnsSection struct {
	Missing     string
	Throughput  table
	Latency     table
	Lists       string
	Outstanding string
	// Figures the prose uses.
	QPSRatio, AddedP50, AddedP50Dnsmasq, P50Ratio string
	PacedQPS, PacedP50                            string
	InsertHold, Batches                           string
	Store                                         string
	Repeat                                        string // pinhole-latency-repeat: names already learned
	Goals                                         string // the design goals, met or missed
	NoInsert                                      string // pinhole-noinsert-latency: the stub without kernel inserts
	Other                                         table  // runs of labels this report does not know
}

var servers = []struct{ key, name string }{{"upstream", "upstream direct"}, {"pinhole", "pinhole stub"}, {"dnsmasq", "dnsmasq --nftset"}}

func (d *doc) dnsSection(r dnsResults) dnsSection {
	s := dnsSection{Missing: d.missing("dns"), Lists: r.lists, Outstanding: "100"}
	if f := strings.Fields(r.lists); len(f) > 0 {
		for i, w := range f {
			if w == "outstanding)" && i > 0 {
				s.Outstanding = strings.TrimPrefix(f[i-1], "(")
			}
		}
	}
	get := func(server, kind, key string) sample { return r.runs[server+"-"+kind][key] }
	head := []string{"", "upstream direct", "pinhole stub", "dnsmasq --nftset", "pinhole ÷ dnsmasq"}
	s.Throughput = table{Head: head}
	row := func(t *table, label, kind, key string, f func(sample) string) {
		cells := []string{label}
		for _, sv := range servers {
			cells = append(cells, f(get(sv.key, kind, key)))
		}
		cells = append(cells, ratio(get("pinhole", kind, key).med(), get("dnsmasq", kind, key).med()))
		t.add(cells...)
	}
	counts := func(x sample) string { return spread(x, count) }
	micros := func(x sample) string { return spreadTime(x, 1e-6) }
	row(&s.Throughput, "queries/s", "throughput", "qps", counts)
	for _, p := range []string{"p50", "p90", "p99", "p99.9"} {
		row(&s.Throughput, p+" latency", "throughput", p, micros)
	}
	row(&s.Throughput, "lost queries", "throughput", "lost", counts)
	s.Latency = table{Head: head}
	for _, p := range []string{"p50", "p90", "p99", "p99.9"} {
		row(&s.Latency, p+" latency", "latency", p, micros)
	}
	up := get("upstream", "latency", "p50").med()
	s.AddedP50 = us(get("pinhole", "latency", "p50").med() - up)
	s.AddedP50Dnsmasq = us(get("dnsmasq", "latency", "p50").med() - up)
	s.Latency.add("p50 added to the upstream's", none, s.AddedP50, s.AddedP50Dnsmasq,
		ratio(get("pinhole", "latency", "p50").med()-up, get("dnsmasq", "latency", "p50").med()-up))
	s.QPSRatio = ratio(get("pinhole", "throughput", "qps").med(), get("dnsmasq", "throughput", "qps").med())
	s.Goals = dnsGoals(get("pinhole", "latency", "p50").med()-up, get("pinhole", "throughput", "qps").med()/get("dnsmasq", "throughput", "qps").med())
	s.P50Ratio = ratio(get("pinhole", "latency", "p50").med(), get("dnsmasq", "latency", "p50").med())
	s.PacedQPS = count(get("upstream", "latency", "qps").med())
	s.PacedP50 = us(up)
	if len(r.pinhole) > 0 {
		var p50, p99, batches, elements sample
		for _, st := range r.pinhole {
			p50 = append(p50, st.Insert.Hold.P50)
			p99 = append(p99, st.Insert.Hold.P99)
			batches = append(batches, float64(st.Insert.Batches))
			elements = append(elements, float64(st.Insert.Elements))
		}
		s.InsertHold = fmt.Sprintf("p50 %s, p99 %s", ns(p50.med()), ns(p99.med()))
		s.Batches = fmt.Sprintf("%s elements in %s transactions, %s per transaction", count(elements.med()), count(batches.med()), sig(elements.med()/batches.med()))
	}
	if x := r.runs["pinhole-noinsert-latency"]; x != nil {
		if p50 := x["p50"].med(); !bad(p50) {
			s.NoInsert = fmt.Sprintf("%s added to the upstream's median (the kernel insert is then the remaining %s)",
				us(p50-up), us(get("pinhole", "latency", "p50").med()-p50))
		}
	}
	if x := r.runs["pinhole-latency-repeat"]; x != nil {
		s.Repeat = fmt.Sprintf("p50 %s, p90 %s, p99 %s", us(x["p50"].med()), us(x["p90"].med()), us(x["p99"].med()))
	}
	s.Other = table{Head: []string{"bench/dns.sh run", "queries/s", "p50", "p90", "p99", "p99.9", "lost"}}
	var labels []string
	for l := range r.runs {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	for _, l := range labels {
		server, kind, _ := strings.Cut(l, "-")
		if l == "pinhole-latency-repeat" || l == "pinhole-noinsert-latency" || (kind == "latency" || kind == "throughput") && slices.ContainsFunc(servers, func(s struct{ key, name string }) bool { return s.key == server }) {
			continue
		}
		x := r.runs[l]
		s.Other.add("`"+l+"`", spread(x["qps"], count), us(x["p50"].med()), us(x["p90"].med()), us(x["p99"].med()), us(x["p99.9"].med()), count(x["lost"].med()))
	}
	if st := r.store; st != nil {
		s.Store = fmt.Sprintf("%s learned addresses (one name each) take %s of RSS (%s bytes per address; Go heap %s bytes per address) and %s to learn (%s each)",
			count(float64(st.N)), mib(st.RSSKiB), sig(st.RSSPerAddr), sig(st.HeapPerAddr), dur(st.Took), dur(st.Took/float64(st.N)))
	}
	return s
}

type raceSection struct {
	Missing, MissingPeers string
	Table                 table
	Cycles                string
	Verdict               string
}

func (d *doc) raceSection(test *raceResult, p peerResults) raceSection {
	s := raceSection{Missing: d.missing("race"), MissingPeers: d.missing("peers")}
	s.Table = table{Head: []string{"", "pinhole (dnsproxy TestRace)", "pinhole stub (bench harness)", "dnsmasq --nftset (bench harness)"}}
	cols := []*raceResult{test, p.race["pinhole"], p.race["dnsmasq"]}
	row := func(label string, f func(r *raceResult) string) {
		cells := []string{label}
		for _, r := range cols {
			if r == nil {
				cells = append(cells, none)
			} else {
				cells = append(cells, f(r))
			}
		}
		s.Table.add(cells...)
	}
	row("cycles", func(r *raceResult) string { return count(float64(r.Cycles)) })
	row("failed first connections", func(r *raceResult) string { return count(float64(r.ConnectFails)) })
	row("failed lookups", func(r *raceResult) string { return count(float64(r.ResolveFails)) })
	row("SYN retransmissions", func(r *raceResult) string { return count(float64(r.SynRetrans)) })
	row("failed connection attempts (kernel)", func(r *raceResult) string { return count(float64(r.AttemptFails)) })
	row("time per cycle", func(r *raceResult) string { return dur(r.Seconds / float64(max(r.Cycles, 1))) })
	if test != nil {
		s.Cycles = count(float64(test.Cycles))
	} else if r := p.race["pinhole"]; r != nil {
		s.Cycles = count(float64(r.Cycles))
	}
	var bad []string
	for i, r := range cols {
		if r != nil && (r.ConnectFails != 0 || r.SynRetrans != 0 || r.ResolveFails != 0) {
			bad = append(bad, s.Table.Head[i+1])
		}
	}
	if len(bad) == 0 {
		s.Verdict = "Every measured server opened the address before the app saw it: no first connection failed and no SYN was retransmitted."
	} else {
		s.Verdict = "**Failures in this run: " + strings.Join(bad, ", ") + "** (see the table)."
	}
	return s
}

var variants = []struct{ key, name string }{{"no-table", "no table"}, {"elements=0", "table, 1 element"}, {"elements=1k", "+1k elements"}, {"elements=100k", "+100k elements"}}

type datapathSection struct {
	Missing                         string
	Table                           table
	ConnRatio100k, ThroughRatio100k string
	ConnRatios                      string
}

func (d *doc) datapathSection(fw benchResults) datapathSection {
	s := datapathSection{Missing: d.missing("firewall")}
	s.Table = table{Head: []string{"datapath"}}
	for _, v := range variants {
		s.Table.Head = append(s.Table.Head, v.name)
	}
	metric := func(label, bench, unit string, f func(float64) string) {
		cells, ratios := []string{label}, []string{"ratio to no table"}
		base := fw.get(bench+"/no-table", unit).med()
		for _, v := range variants {
			x := fw.get(bench+"/"+v.key, unit)
			cells = append(cells, spread(x, f))
			if v.key == "no-table" {
				ratios = append(ratios, "1")
			} else {
				ratios = append(ratios, ratio(x.med(), base))
			}
		}
		s.Table.add(cells...)
		s.Table.add(ratios...)
	}
	metric("iperf3 TCP, Gbit/s", "BenchmarkThroughput", "Gbit/s", sig)
	metric("new TCP connections/s", "BenchmarkConnectRate", "conn/s", count)
	base := fw.get("BenchmarkConnectRate/no-table", "conn/s").med()
	s.ConnRatio100k = ratio(fw.get("BenchmarkConnectRate/elements=100k", "conn/s").med(), base)
	s.ThroughRatio100k = ratio(fw.get("BenchmarkThroughput/elements=100k", "Gbit/s").med(), fw.get("BenchmarkThroughput/no-table", "Gbit/s").med())
	var rs []string
	for _, v := range variants[1:] {
		rs = append(rs, ratio(fw.get("BenchmarkConnectRate/"+v.key, "conn/s").med(), base))
	}
	s.ConnRatios = strings.Join(rs, ", ")
	return s
}

type applySection struct {
	Missing, MissingLearned string
	Table, Learned          table
	PerApp100, PerApp1000   string
	Ratio1000, Ratio1       string
	PerElement              string
}

func (d *doc) applySection(a applyResults, fw benchResults) applySection {
	s := applySection{Missing: d.missing("apply"), MissingLearned: d.missing("firewall")}
	s.Table = table{Head: []string{"apps", "pinhole Apply", "nft -f, same table", "pinhole ÷ nft", "the table"}}
	for _, n := range a.counts {
		s.Table.add(count(float64(n)), spreadTime(a.pinhole[n], 1e-3), spreadTime(a.nft[n], 1e-3), ratio(a.pinhole[n].med(), a.nft[n].med()), a.table[n])
	}
	if x := a.pinhole[100]; x.ok() {
		s.PerApp100 = ms(x.med() / 100)
	}
	if x := a.pinhole[1000]; x.ok() {
		s.PerApp1000 = ms(x.med() / 1000)
	}
	s.Ratio1000 = ratio(a.pinhole[1000].med(), a.nft[1000].med())
	s.Ratio1 = ratio(a.pinhole[1].med(), a.nft[1].med())
	s.Learned = table{Head: []string{"what", "time", "per element"}}
	for _, n := range []int{10000, 100000} {
		x := fw.get(fmt.Sprintf("BenchmarkApplyLearned/elements=%d", n), "ns/op")
		s.Learned.add(fmt.Sprintf("Apply, 1 app + %s learned elements", count(float64(n))), spreadTime(x, 1e-9), ns(x.med()/float64(n)))
	}
	for _, n := range []int{1, 16, 10000, 100000} {
		x := fw.get(fmt.Sprintf("BenchmarkAllow/elements=%d", n), "ns/op")
		per := ns(x.med() / float64(n))
		if n >= 10000 {
			per += fmt.Sprintf(" (%s elements/s)", count(fw.get(fmt.Sprintf("BenchmarkAllow/elements=%d", n), "elements/s").med()))
		}
		what := fmt.Sprintf("Allow, %s elements", count(float64(n)))
		if n == 1 {
			what = "Allow, 1 element"
		}
		s.Learned.add(what, spreadTime(x, 1e-9), per)
	}
	if x := fw.get("BenchmarkAllow/elements=100000", "ns/op"); x.ok() {
		s.PerElement = ns(x.med() / 100000)
	}
	return s
}

type memorySection struct {
	Missing, MissingPeers string
	Table, Daemon         table
	IdleRatio, LoadRatio  string
	PeerNames             string
	PinholedIdle          string
	DnsmasqElements       string
	StubLearned           string
}

func (d *doc) memorySection(daemon benchResults, p peerResults, dns dnsResults) memorySection {
	s := memorySection{Missing: d.missing("daemon"), MissingPeers: d.missing("peers")}
	idle := "BenchmarkIdleRSS/apps=10/learned=0"
	loaded := "BenchmarkIdleRSS/apps=10/learned=100000"
	s.PeerNames = answered(p.load["dnsmasq"])
	s.Table = table{Head: []string{"", "pinhole", "dnsmasq --nftset", "pinhole ÷ dnsmasq"}}
	pIdle := daemon.get(idle, "MiB-RSS-idle").med() * 1024
	pLoaded := daemon.get(loaded, "MiB-RSS-idle").med() * 1024
	s.PinholedIdle = mib(pIdle)
	s.IdleRatio = ratio(pIdle, p.rssIdle["dnsmasq"])
	s.LoadRatio = ratio(pLoaded, p.rssLoad["dnsmasq"])
	s.Table.add("idle: pinholed with 10 apps; dnsmasq started", mib(pIdle), mib(p.rssIdle["dnsmasq"]), s.IdleRatio)
	s.Table.add("pinholed with 100,000 learned addresses restored; dnsmasq after a list of "+s.PeerNames, mib(pLoaded), mib(p.rssLoad["dnsmasq"]), s.LoadRatio)
	s.Table.add("DNS stub process (stubs, store, firewall; no API) idle", mib(p.rssIdle["pinhole"]), mib(p.rssIdle["dnsmasq"]), ratio(p.rssIdle["pinhole"], p.rssIdle["dnsmasq"]))
	s.Table.add("DNS stub process right after a list of "+answered(p.load["pinhole"]), mib(p.rssLoad["pinhole"]), mib(p.rssLoad["dnsmasq"]), ratio(p.rssLoad["pinhole"], p.rssLoad["dnsmasq"]))
	if st := p.stub; st != nil {
		s.Table.add("the same after a GC returned freed memory to the OS", mib(st.RSSKiB), mib(p.rssLoad["dnsmasq"]), ratio(st.RSSKiB, p.rssLoad["dnsmasq"]))
		s.StubLearned = count(float64(st.LearnedEntries))
	}
	if st := dns.store; st != nil {
		s.Table.add("memory per learned address (store alone)", sig(st.RSSPerAddr)+" B RSS, "+sig(st.HeapPerAddr)+" B heap", "none kept", none)
	}
	if e, ok := p.elements["dnsmasq"]; ok {
		s.DnsmasqElements = count(e)
	}
	s.Daemon = table{Head: []string{"pinholed, 10 apps", "RSS idle", "Go heap in use", "start to READY", "table install", "reload"}}
	for _, c := range []struct{ name, label string }{{idle, "nothing learned"}, {loaded, "100,000 learned addresses"}} {
		s.Daemon.add(c.label, mib(daemon.get(c.name, "MiB-RSS-idle").med()*1024), mib(daemon.get(c.name, "MiB-heap-inuse").med()*1024),
			dur(daemon.logDuration(c.name, "msg=ready", "took")), dur(daemon.logDuration(c.name, "firewall table installed", "took")),
			ms(daemon.get(c.name, "ms-reload").med()))
	}
	return s
}

// answered describes a dnsperf load: "100,000 names (99,909 answered)".
func answered(load map[string]string) string {
	sent, done := num(load["sent"]), num(load["completed"])
	switch {
	case bad(done):
		return none + " names"
	case bad(sent) || sent == done:
		return count(done) + " names"
	}
	return fmt.Sprintf("%s names (%s answered)", count(sent), count(done))
}

type sizesSection struct {
	Missing     string
	Table       table
	Dnsmasq     string // the sentence
	DnsmasqBin  string
	DnsmasqLibs string
}

func (d *doc) sizesSection(z sizeResults) sizesSection {
	s := sizesSection{Missing: d.missing("sizes")}
	s.Table = table{Head: []string{"target", "pinholed (daemon)", "pinhole (CLI, includes the lab)"}}
	for _, t := range []struct{ dir, name string }{{"linux-armv7", "linux/arm (v7)"}, {"linux-arm64", "linux/arm64"}, {"linux-amd64", "linux/amd64"}} {
		s.Table.add(t.name, mb(z.bins[t.dir+"/pinholed"]), mb(z.bins[t.dir+"/pinhole"]))
	}
	if z.dnsmasq > 0 {
		s.DnsmasqBin = mb(z.dnsmasq)
		s.DnsmasqLibs = fmt.Sprintf("%d shared libraries, %s", z.dnsmasqLibs, mb(z.libsBytes))
		s.Dnsmasq = fmt.Sprintf("%s, dynamically linked against %d shared libraries of %s together (libc, libnftables, libdbus, nettle, ...)", mb(z.dnsmasq), z.dnsmasqLibs, mb(z.libsBytes))
	}
	return s
}

type microSection struct {
	Missing string
	Table   table
}

func (d *doc) microSection(b benchResults) microSection {
	s := microSection{Missing: d.missing("micro")}
	s.Table = table{Head: []string{"benchmark", "time per op", "allocations per op"}}
	for _, c := range []struct{ name, label string }{
		{"BenchmarkMatcher/exact-hit", "hostname matcher, 10,000 patterns: exact hit"},
		{"BenchmarkMatcher/wildcard-hit", "… wildcard hit"},
		{"BenchmarkMatcher/deep-wildcard-hit", "… wildcard hit, deep name"},
		{"BenchmarkMatcher/miss", "… miss"},
		{"BenchmarkMatcher/miss-many-labels", "… miss, many labels"},
		{"BenchmarkMatcher/mix", "… mix of the above"},
		{"BenchmarkMatchName10k/AllowsName", "policy, app with 10,000 host rules: AllowsName"},
		{"BenchmarkMatchName10k/MatchName", "… MatchName (which rule)"},
		{"BenchmarkParsePacket/ipv4-tcp", "audit: parse an NFLOG packet, IPv4 TCP"},
		{"BenchmarkParsePacket/ipv6-chain-udp", "… IPv6 with 3 extension headers, UDP"},
		{"BenchmarkDeliver/repeat", "audit: deliver a packet of an open aggregate"},
		{"BenchmarkDeliver/new", "… a packet that makes a new record"},
	} {
		s.Table.add(c.label, spreadTime(b.get(c.name, "ns/op"), 1e-9), sig(b.get(c.name, "allocs/op").med()))
	}
	return s
}

// glance is the summary table at the top: medians of the sections' cells.
func (d *doc) glance() {
	t := table{Head: []string{"figure", "pinhole", "peer", "pinhole ÷ peer"}}
	if r := d.DNS.Throughput.Rows; len(r) > 0 {
		t.add("DNS queries/s, new names, "+d.DNS.Outstanding+" outstanding (higher is better)", median(r[0][2]), "dnsmasq --nftset: "+median(r[0][3]), r[0][4])
	}
	if r := d.DNS.Latency.Rows; len(r) > 0 {
		t.add("DNS p50 latency, one query outstanding", median(r[0][2])+" (upstream's + "+d.DNS.AddedP50+")",
			"dnsmasq --nftset: "+median(r[0][3])+" (upstream's + "+d.DNS.AddedP50Dnsmasq+")", r[0][4])
	}
	if r := d.Race.Table.Rows; len(r) > 3 {
		t.add("resolve-then-connect race, "+d.Race.Cycles+" cycles: failed first connections / SYN retransmissions",
			r[1][1]+" / "+r[3][1], "dnsmasq --nftset: "+r[1][3]+" / "+r[3][3], none)
	}
	if r := d.Datapath.Table.Rows; len(r) == 4 {
		t.add("new TCP connections/s through the table with 100k learned addresses (higher is better)", median(r[2][4]), "no table: "+median(r[2][1]), r[3][4])
		t.add("TCP throughput, Gbit/s, 100k learned addresses (higher is better)", median(r[0][4]), "no table: "+median(r[0][1]), r[1][4])
	}
	if r := d.Apply.Table.Rows; len(r) > 0 {
		last := r[len(r)-1]
		t.add("replace the whole ruleset, "+last[0]+" apps", median(last[1]), "`nft -f` of the same table: "+median(last[2]), last[3])
	}
	if r := d.Memory.Table.Rows; len(r) > 1 {
		t.add("RSS idle (pinholed, 10 apps)", r[0][1], "dnsmasq --nftset: "+r[0][2], r[0][3])
		t.add("RSS with 100,000 learned addresses (pinholed) / after a list of "+d.Memory.PeerNames+" (dnsmasq)", r[1][1], "dnsmasq --nftset: "+r[1][2], r[1][3])
	}
	if r := d.Sizes.Table.Rows; len(r) > 0 && d.Sizes.DnsmasqBin != "" {
		t.add("pinholed binary, linux/arm, static", r[0][1], "dnsmasq, Debian amd64: "+d.Sizes.DnsmasqBin+" + "+d.Sizes.DnsmasqLibs, none)
	}
	d.Glance = t
}

// dnsGoals says whether this run met the DNS design goals: at most 100 µs
// added to the upstream's median, at least twice dnsmasq's queries/s.
func dnsGoals(addedP50, qpsRatio float64) string {
	if bad(addedP50) || bad(qpsRatio) {
		return ""
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	return fmt.Sprintf("p50 added to the upstream's under 100 µs: %s (%s); at least 2× dnsmasq's queries/s on new names: %s (%s)",
		verdict(addedP50 < 100), us(addedP50), verdict(qpsRatio >= 2), sig(qpsRatio)+"×")
}
