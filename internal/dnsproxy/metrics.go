package dnsproxy

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Verdict is what the proxy did with one query.
type Verdict uint8

const (
	// Allowed: forwarded and answered.
	Allowed Verdict = iota
	// Blocked: the app may not resolve the name; NXDOMAIN.
	Blocked
	// Rebinding: a public name answered a private address; SERVFAIL.
	Rebinding
	// RateLimited: over the app's rate or in-flight cap; SERVFAIL.
	RateLimited
	// UpstreamError: no upstream answered; SERVFAIL.
	UpstreamError
	// Invalid: not a single standard query; FORMERR or NOTIMP.
	Invalid
	// NoUpstream: the policy has no upstream servers (an empty
	// resolv.conf); SERVFAIL.
	NoUpstream
	// Audit: audit mode forwarded a query that enforce mode would have
	// blocked or refused; the addresses are not opened.
	Audit
	numVerdicts
)

var verdictNames = [numVerdicts]string{"allowed", "blocked", "rebinding", "ratelimited", "upstream_error", "invalid", "no_upstream", "audit"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// holdBuckets are the upper bounds of the hold-latency histogram.
var holdBuckets = [13]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond,
}

// histogram is a lock-free fixed-bucket latency histogram that serves both
// the Prometheus metric and Stats.
type histogram struct {
	counts [len(holdBuckets) + 1]atomic.Uint64 // the last is +Inf
	sumNs  atomic.Uint64
	maxNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(holdBuckets) && d > holdBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	ns := uint64(max(d, 0))
	h.sumNs.Add(ns)
	for {
		m := h.maxNs.Load()
		if ns <= m || h.maxNs.CompareAndSwap(m, ns) {
			break
		}
	}
}

// HoldStats summarises how long answers waited for the kernel.
type HoldStats struct {
	Count uint64 `json:"count"`
	// P50 and P99 are bucket upper bounds (the true value is at most this).
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	Sum time.Duration `json:"sum_ns"`
}

func (h *histogram) stats() HoldStats {
	var counts [len(holdBuckets) + 1]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		total += counts[i]
	}
	maxD := time.Duration(h.maxNs.Load())
	q := func(p float64) time.Duration {
		if total == 0 {
			return 0
		}
		want := uint64(math.Ceil(p * float64(total)))
		var c uint64
		for i, n := range counts {
			c += n
			if c >= want && i < len(holdBuckets) {
				return min(holdBuckets[i], maxD)
			}
		}
		return maxD
	}
	return HoldStats{Count: total, P50: q(0.5), P99: q(0.99), Max: maxD, Sum: time.Duration(h.sumNs.Load())}
}

// collector exports the proxy's counters to Prometheus at scrape time.
type collector struct {
	px *Proxy

	queries, upQueries, upErrors, hold, insTimeouts, insErrors, insOverflow, batches, elements, learnedEntries, evictions, revoked *prometheus.Desc
}

func newCollector(px *Proxy) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		px:             px,
		queries:        d("pinhole_dns_queries_total", "DNS queries answered by the stubs, by app and verdict.", "app", "verdict"),
		upQueries:      d("pinhole_dns_upstream_queries_total", "Queries sent to each upstream server.", "upstream"),
		upErrors:       d("pinhole_dns_upstream_errors_total", "Upstream tries that failed (timeout, network error, SERVFAIL, REFUSED, NOTIMP).", "upstream"),
		hold:           d("pinhole_dns_insert_hold_seconds", "How long answers waited for the kernel to acknowledge their set elements."),
		insTimeouts:    d("pinhole_dns_insert_timeouts_total", "Answers released before the kernel acknowledged, after the insert timeout."),
		insErrors:      d("pinhole_dns_insert_errors_total", "Set element transactions that failed."),
		insOverflow:    d("pinhole_dns_insert_queue_full_total", "Answers released without queueing their elements because the insert queue was full."),
		batches:        d("pinhole_dns_insert_batches_total", "Set element transactions sent to the kernel."),
		elements:       d("pinhole_dns_inserted_elements_total", "Set elements the kernel acknowledged."),
		learnedEntries: d("pinhole_learned_entries", "Learned name/address entries per app.", "app"),
		evictions:      d("pinhole_learned_evictions_total", "Learned entries evicted by a cap, by app and cap.", "app", "cap"),
		revoked:        d("pinhole_dns_revoked_elements_total", "Set elements removed from the kernel because a cap evicted their learned entries."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queries, c.upQueries, c.upErrors, c.hold, c.insTimeouts, c.insErrors, c.insOverflow, c.batches, c.elements, c.learnedEntries, c.evictions, c.revoked} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	px := c.px
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	px.mu.Lock()
	rts := make([]*appRuntime, 0, len(px.runtimes))
	for _, rt := range px.runtimes {
		rts = append(rts, rt)
	}
	px.mu.Unlock()
	for _, rt := range rts {
		for v := range numVerdicts {
			counter(c.queries, rt.counts[v].Load(), rt.name, v.String())
		}
	}
	for _, up := range px.fwd.Load().ups {
		counter(c.upQueries, up.queries.Load(), up.addr.String())
		counter(c.upErrors, up.errors.Load(), up.addr.String())
	}
	var buckets = make(map[float64]uint64, len(holdBuckets))
	var cum uint64
	for i, b := range holdBuckets {
		cum += px.hold.counts[i].Load()
		buckets[b.Seconds()] = cum
	}
	cum += px.hold.counts[len(holdBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(c.hold, cum, time.Duration(px.hold.sumNs.Load()).Seconds(), buckets)
	counter(c.insTimeouts, px.insertTimeouts.Load())
	counter(c.insErrors, px.commit.errors.Load())
	counter(c.insOverflow, px.insertOverflows.Load())
	counter(c.batches, px.commit.batches.Load())
	counter(c.elements, px.commit.elements.Load())
	counter(c.revoked, px.revs.revoked.Load())
	for _, st := range px.store.Stats() {
		ch <- prometheus.MustNewConstMetric(c.learnedEntries, prometheus.GaugeValue, float64(st.Entries), st.App)
		counter(c.evictions, st.EvictedPerApp, st.App, "per_app")
		counter(c.evictions, st.EvictedPerName, st.App, "per_name")
	}
}
