package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is the values one figure took over the repetitions of a run.
type sample []float64

func (s sample) ok() bool { return len(s) > 0 }

func (s sample) sorted() []float64 {
	v := slices.Clone(s)
	slices.Sort(v)
	return v
}

// med is the median, NaN when there is no value.
func (s sample) med() float64 {
	v := s.sorted()
	switch {
	case len(v) == 0:
		return math.NaN()
	case len(v)%2 == 1:
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s sample) min() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Min(s)
}

func (s sample) max() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Max(s)
}

// benchResults holds Go benchmark output: name (without the -GOMAXPROCS
// suffix) -> unit -> one value per line, and the log lines printed under
// each benchmark with -test.v.
type benchResults struct {
	vals map[string]map[string]sample
	logs map[string][]string
}

func (b benchResults) get(name, unit string) sample { return b.vals[name][unit] }

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads `go test -bench` output.
func parseBench(text string) benchResults {
	b := benchResults{vals: map[string]map[string]sample{}, logs: map[string][]string{}}
	var current string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "Benchmark"):
			current = f[0]
		case len(f) >= 4 && strings.HasPrefix(f[0], "Benchmark"):
			if _, err := strconv.Atoi(f[1]); err != nil {
				continue
			}
			name := procSuffix.ReplaceAllString(f[0], "")
			current = name
			if b.vals[name] == nil {
				b.vals[name] = map[string]sample{}
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					break
				}
				b.vals[name][f[i+1]] = append(b.vals[name][f[i+1]], v)
			}
		case current != "" && strings.HasPrefix(line, "    "):
			b.logs[current] = append(b.logs[current], strings.TrimSpace(line))
		}
	}
	return b
}

// logDuration finds key=<duration> in the first log line of a benchmark
// that contains marker, in seconds.
func (b benchResults) logDuration(name, marker, key string) float64 {
	re := regexp.MustCompile(`\b` + regexp.QuoteMeta(key) + `=(\S+)`)
	for _, l := range b.logs[name] {
		if !strings.Contains(l, marker) {
			continue
		}
		if m := re.FindStringSubmatch(l); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				return d.Seconds()
			}
		}
	}
	return math.NaN()
}

// keyValues parses "k=v" fields.
func keyValues(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// dnsResults is what bench/dns.sh printed.
type dnsResults struct {
	// runs: label (upstream-latency, pinhole-throughput, ...) -> key
	// (qps, p50, ..., lost) -> one value per repetition.
	runs       map[string]map[string]sample
	lists      string // the "lists: ..." header
	pinhole    []stubStats
	dnsmasqSet sample // elements dnsmasq put into the set per repetition
	store      *storeMemory
}

type stubStats struct {
	LearnedEntries int     `json:"learned_entries"`
	RSSKiB         float64 `json:"rss_kib"`
	HeapInuseKiB   float64 `json:"heap_inuse_kib"`
	Insert         struct {
		Batches  int `json:"batches"`
		Elements int `json:"elements"`
		Timeouts int `json:"timeouts"`
		Errors   int `json:"errors"`
		Hold     struct {
			P50 float64 `json:"p50_ns"`
			P99 float64 `json:"p99_ns"`
		} `json:"hold"`
	} `json:"insert"`
}

type storeMemory struct {
	N                   int
	Took                float64 // seconds
	RSSKiB              float64 // growth
	RSSPerAddr          float64 // bytes
	HeapPerAddr         float64 // bytes
	RSSBefore, RSSAfter float64
}

var (
	storeLine = regexp.MustCompile(`learned (\d+) addresses in (\S+) .*RSS (\d+) -> (\d+) KiB \(\+(-?\d+) KiB, (-?[\d.]+) B/address\); heap in use .* \((-?[\d.]+) B/address\)`)
	setLine   = regexp.MustCompile(`dnsmasq set elements: (\d+)`)
)

func parseDNS(text string) dnsResults {
	r := dnsResults{runs: map[string]map[string]sample{}}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(line, "\t")
		switch {
		case len(f) >= 3 && strings.HasPrefix(f[1], "qps="):
			kv := keyValues(f[1:])
			if r.runs[f[0]] == nil {
				r.runs[f[0]] = map[string]sample{}
			}
			for k, v := range kv {
				if x := num(v); !math.IsNaN(x) {
					r.runs[f[0]][k] = append(r.runs[f[0]][k], x)
				}
			}
		case strings.HasPrefix(line, "# lists:"):
			r.lists = strings.TrimSpace(strings.TrimPrefix(line, "# lists:"))
		case strings.HasPrefix(line, "pinhole after run:"):
			var s stubStats
			if json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "pinhole after run:"))), &s) == nil {
				r.pinhole = append(r.pinhole, s)
			}
		case setLine.MatchString(line):
			r.dnsmasqSet = append(r.dnsmasqSet, num(setLine.FindStringSubmatch(line)[1]))
		case storeLine.MatchString(line):
			m := storeLine.FindStringSubmatch(line)
			n, _ := strconv.Atoi(m[1])
			d, _ := time.ParseDuration(m[2])
			r.store = &storeMemory{N: n, Took: d.Seconds(), RSSBefore: num(m[3]), RSSAfter: num(m[4]), RSSKiB: num(m[5]),
				RSSPerAddr: num(m[6]), HeapPerAddr: num(m[7])}
		}
	}
	return r
}

// raceResult is one resolve-then-connect run.
type raceResult struct {
	Cycles       int     `json:"cycles"`
	ResolveFails int     `json:"resolve_fails"`
	ConnectFails int     `json:"connect_fails"`
	SynRetrans   int64   `json:"syn_retrans"`
	ActiveOpens  int64   `json:"active_opens"`
	AttemptFails int64   `json:"attempt_fails"`
	Seconds      float64 `json:"seconds"`
	Passed       bool    `json:"-"`
}

var (
	raceLine  = regexp.MustCompile(`race: (\d+) cycles in (\S+); SYN retransmissions (\d+), active opens (\d+), failed attempts (\d+)`)
	raceFails = regexp.MustCompile(`(\d+) resolve and (\d+) connect failures in \d+ cycles`)
)

// parseRaceTest reads the verbose output of internal/dnsproxy's TestRace.
func parseRaceTest(text string) *raceResult {
	m := raceLine.FindStringSubmatch(text)
	if m == nil {
		return nil
	}
	r := &raceResult{}
	r.Cycles, _ = strconv.Atoi(m[1])
	if d, err := time.ParseDuration(m[2]); err == nil {
		r.Seconds = d.Seconds()
	}
	r.SynRetrans, _ = strconv.ParseInt(m[3], 10, 64)
	r.ActiveOpens, _ = strconv.ParseInt(m[4], 10, 64)
	r.AttemptFails, _ = strconv.ParseInt(m[5], 10, 64)
	if f := raceFails.FindStringSubmatch(text); f != nil {
		r.ResolveFails, _ = strconv.Atoi(f[1])
		r.ConnectFails, _ = strconv.Atoi(f[2])
	}
	r.Passed = strings.Contains(text, "--- PASS: TestRace")
	return r
}

// peerResults is what the peers part of bench/run printed: per server
// (pinhole, dnsmasq) its race, RSS idle and loaded, and load figures.
type peerResults struct {
	race     map[string]*raceResult
	rssIdle  map[string]float64 // KiB
	rssLoad  map[string]float64 // KiB
	load     map[string]map[string]string
	elements map[string]float64
	stub     *stubStats
}

func parsePeers(text string) peerResults {
	p := peerResults{race: map[string]*raceResult{}, rssIdle: map[string]float64{}, rssLoad: map[string]float64{},
		load: map[string]map[string]string{}, elements: map[string]float64{}}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			continue
		}
		switch f[0] {
		case "race":
			var r raceResult
			if json.Unmarshal([]byte(f[2]), &r) == nil {
				r.Passed = r.ConnectFails == 0 && r.ResolveFails == 0 && r.SynRetrans == 0
				p.race[f[1]] = &r
			}
		case "rss":
			if len(f) >= 4 {
				if f[2] == "idle" {
					p.rssIdle[f[1]] = num(f[3])
				} else {
					p.rssLoad[f[1]] = num(f[3])
				}
			}
		case "load":
			p.load[f[1]] = keyValues(strings.Fields(f[2]))
		case "elements":
			p.elements[f[1]] = num(f[2])
		case "stats":
			var s stubStats
			if json.Unmarshal([]byte(f[2]), &s) == nil {
				p.stub = &s
			}
		}
	}
	return p
}

// applyResults: app count -> pinhole and nft -f times (ms) and the table.
type applyResults struct {
	counts  []int
	pinhole map[int]sample
	nft     map[int]sample
	table   map[int]string
}

var applyTable = regexp.MustCompile(`^# apps=(\d+): (.*?); medians`)

func parseApply(text string) applyResults {
	a := applyResults{pinhole: map[int]sample{}, nft: map[int]sample{}, table: map[int]string{}}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 4 && f[0] == "apply" {
			kv := keyValues(f[1:])
			n, err := strconv.Atoi(kv["apps"])
			if err != nil {
				continue
			}
			if !slices.Contains(a.counts, n) {
				a.counts = append(a.counts, n)
			}
			a.pinhole[n] = append(a.pinhole[n], num(kv["pinhole_ms"]))
			a.nft[n] = append(a.nft[n], num(kv["nft_ms"]))
		}
		if m := applyTable.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			a.table[n] = m[2]
		}
	}
	return a
}

// sizeResults: "linux-armv7/pinholed" -> bytes, and dnsmasq for scale.
type sizeResults struct {
	bins        map[string]float64
	dnsmasq     float64
	dnsmasqLibs int
	libsBytes   float64
}

var (
	sizeLine    = regexp.MustCompile(`(linux-[a-z0-9]+)/([a-z]+)\s+(\d+) bytes`)
	dnsmasqLine = regexp.MustCompile(`^# dnsmasq \S+ (\d+) bytes`)
	libsLine    = regexp.MustCompile(`^# dnsmasq-libs (\d+) libraries (\d+) bytes`)
)

func parseSizes(text string) sizeResults {
	s := sizeResults{bins: map[string]float64{}}
	for _, line := range strings.Split(text, "\n") {
		if m := sizeLine.FindStringSubmatch(line); m != nil {
			s.bins[m[1]+"/"+m[2]] = num(m[3])
		}
		if m := dnsmasqLine.FindStringSubmatch(line); m != nil {
			s.dnsmasq = num(m[1])
		}
		if m := libsLine.FindStringSubmatch(line); m != nil {
			s.dnsmasqLibs, _ = strconv.Atoi(m[1])
			s.libsBytes = num(m[2])
		}
	}
	return s
}

// partStatus is one line of parts.tsv.
type partStatus struct {
	Name    string
	Status  int
	Seconds float64
}

// readKV reads "key: value" lines.
func readKV(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}

func readParts(path string) ([]partStatus, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []partStatus
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want name, status and seconds, got %q", path, i+1, line)
		}
		st, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: status: %w", path, i+1, err)
		}
		out = append(out, partStatus{Name: f[0], Status: st, Seconds: num(f[2])})
	}
	return out, nil
}

// readPart returns a part's stdout, or "" when it did not run.
func readPart(dir, name string) string {
	data, err := os.ReadFile(filepath.Join(dir, name+".txt"))
	if err != nil {
		return ""
	}
	return string(data)
}
