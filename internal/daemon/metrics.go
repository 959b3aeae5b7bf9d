package daemon

import (
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/buildinfo"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/logprefix"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// metrics are pinholed's own Prometheus metrics; the DNS proxy registers
// its own on the same registry.
type metrics struct {
	reg *prometheus.Registry

	reloads       *prometheus.CounterVec
	lastReload    prometheus.Gauge
	lastReloadOK  prometheus.Gauge
	apps          prometheus.Gauge
	cgroupPresent *prometheus.GaugeVec
	persistErrors prometheus.Counter
	auditRestarts prometheus.Counter
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinhole_config_reloads_total",
			Help: "Config reloads (SIGHUP or POST /config/reload) by result: success, or failure (the old policy stayed).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinhole_config_last_reload_success_timestamp_seconds",
			Help: "When the running policy was loaded (start or reload), in Unix seconds.",
		}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinhole_config_last_reload_successful",
			Help: "1 if the last reload attempt succeeded (or none was made), 0 if it failed.",
		}),
		apps: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinhole_policy_apps",
			Help: "Apps in the running policy.",
		}),
		cgroupPresent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinhole_app_cgroup_present",
			Help: "1 if the cgroup of an app identified by cgroup exists and the firewall matches its id, else 0.",
		}, []string{"app"}),
		persistErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinhole_learned_persist_errors_total",
			Help: "Failed writes of the learned-address snapshot.",
		}),
		auditRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinhole_audit_reader_restarts_total",
			Help: "Times the NFLOG reader was (re)started after a failure or an NFLOG group change.",
		}),
	}
	m.lastReloadOK.Set(1)
	bi := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "pinhole_build_info",
		Help:        "pinholed's version; the value is 1.",
		ConstLabels: prometheus.Labels{"version": buildinfo.String(), "goversion": runtime.Version()},
	})
	bi.Set(1)
	reg.MustRegister(m.reloads, m.lastReload, m.lastReloadOK, m.apps, m.cgroupPresent, m.persistErrors, m.auditRestarts, bi,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}

// rulesetReader reads the firewall's rules with their counters.
type rulesetReader interface {
	Rulesets() ([]firewall.Ruleset, error)
}

// firewallCollector turns the counters of the per-app chains into per-app
// packet and byte counts at scrape time, so no packet costs userspace work.
type firewallCollector struct {
	fw     rulesetReader
	log    *slog.Logger
	errors atomic.Uint64

	packets, bytes, scrapeErrors *prometheus.Desc
}

func newFirewallCollector(fw rulesetReader, log *slog.Logger) *firewallCollector {
	return &firewallCollector{
		fw:  fw,
		log: log,
		packets: prometheus.NewDesc("pinhole_firewall_packets_total",
			"Packets through each identity's firewall chain by direction and verdict: allowed (a new connection or datagram let through), denied, or audit (audit mode: would have been denied). Established flows are not counted here.",
			[]string{"app", "direction", "verdict"}, nil),
		bytes: prometheus.NewDesc("pinhole_firewall_bytes_total",
			"Bytes of the packets counted by pinhole_firewall_packets_total.",
			[]string{"app", "direction", "verdict"}, nil),
		scrapeErrors: prometheus.NewDesc("pinhole_firewall_scrape_errors_total",
			"Scrapes that could not read the firewall's counters.", nil, nil),
	}
}

func (c *firewallCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
	ch <- c.scrapeErrors
}

// counterKey groups rule counters.
type counterKey struct {
	app       string
	direction logprefix.Direction
	verdict   string
}

func (c *firewallCollector) Collect(ch chan<- prometheus.Metric) {
	rs, err := c.fw.Rulesets()
	if err != nil {
		c.errors.Add(1)
		c.log.Warn("read firewall counters for metrics", "err", err)
	}
	for k, v := range appCounters(rs) {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v[0]), k.app, string(k.direction), k.verdict)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v[1]), k.app, string(k.direction), k.verdict)
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.CounterValue, float64(c.errors.Load()))
}

// appCounters sums the rules of the per-identity chains ("out_NAME",
// "in_NAME"): accepts are allowed, rejects and drops denied, and the accept
// of audit mode (its comment starts with "audit:") is audit. The value is
// {packets, bytes}.
func appCounters(rs []firewall.Ruleset) map[counterKey][2]uint64 {
	out := map[counterKey][2]uint64{}
	for _, r := range rs {
		for _, rule := range r.Rules {
			var dir logprefix.Direction
			switch {
			case rule.App == "":
				continue
			case strings.HasPrefix(rule.Chain, "out_"):
				dir = logprefix.Out
			case strings.HasPrefix(rule.Chain, "in_"):
				dir = logprefix.In
			default:
				continue
			}
			var verdict string
			switch rule.Action {
			case "accept":
				verdict = "allowed"
				if strings.HasPrefix(rule.Comment, "audit:") {
					verdict = "audit"
				}
			case "reject", "drop":
				verdict = "denied"
			default:
				continue
			}
			k := counterKey{rule.App, dir, verdict}
			v := out[k]
			v[0] += rule.Packets
			v[1] += rule.Bytes
			out[k] = v
		}
	}
	return out
}

// packetsByApp sums appCounters per app for the API: allowed, and denied or
// audit.
func packetsByApp(rs []firewall.Ruleset) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for k, v := range appCounters(rs) {
		p := out[k.app]
		if k.verdict == "allowed" {
			p[0] += v[0]
		} else {
			p[1] += v[0]
		}
		out[k.app] = p
	}
	return out
}

// auditCollector exports the audit log's counters.
type auditCollector struct {
	log *audit.Log

	packets, records, dropped *prometheus.Desc
}

func newAuditCollector(l *audit.Log) *auditCollector {
	return &auditCollector{
		log: l,
		packets: prometheus.NewDesc("pinhole_audit_packets_total",
			"Packets the firewall logged (denied, or in audit mode would-be-denied) by identity, verdict and direction. Logging is rate-limited per chain, so this can be lower than pinhole_firewall_packets_total.",
			[]string{"app", "verdict", "direction"}, nil),
		records: prometheus.NewDesc("pinhole_audit_records_total",
			"Audit records made (repeats of a flow are aggregated into one record).",
			[]string{"app", "verdict", "direction"}, nil),
		dropped: prometheus.NewDesc("pinhole_audit_problems_total",
			"Logged packets or records the audit could not handle, by kind: lost (NFLOG overrun), parse_error, foreign_prefix, subscriber_drop, disk_dropped, disk_error.",
			[]string{"kind"}, nil),
	}
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.records
	ch <- c.dropped
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.log.Stats()
	for k, v := range st.Packets {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v), k.App, string(k.Verdict), string(k.Direction))
	}
	for k, v := range st.Records {
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(v), k.App, string(k.Verdict), string(k.Direction))
	}
	for kind, v := range map[string]uint64{
		"lost": st.Lost, "parse_error": st.ParseErrors, "foreign_prefix": st.ForeignPrefix,
		"subscriber_drop": st.SubscriberDrops, "disk_dropped": st.DiskDropped, "disk_error": st.DiskErrors,
	} {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(v), kind)
	}
}

// setApps updates the gauges that follow the policy.
func (m *metrics) setApps(p *policy.Policy) {
	m.apps.Set(float64(len(p.Apps)))
	m.cgroupPresent.Reset()
}
