package daemon

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/netnstest"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// BenchmarkIdleRSS measures the resident memory of an idle pinholed with 10
// apps, without and with 100,000 learned addresses restored at start. Run
// it once: go test -run XXX -bench IdleRSS -benchtime 1x ./internal/daemon
func BenchmarkIdleRSS(b *testing.B) {
	for _, learnedN := range []int{0, 100000} {
		b.Run(fmt.Sprintf("apps=10/learned=%d", learnedN), func(b *testing.B) {
			netnstest.RequireDevice(b)
			cfgPath := writeBulkConfig(b, 10, learnedN)
			p := startPinholed(b, cfgPath)
			ready := rssKiB(b, p.cmd.Process.Pid)
			// Let the runtime settle: the scavenger returns freed pages
			// within a few seconds; take the reading once it is steady.
			var rss int
			for i := 0; i < 30; i++ {
				time.Sleep(time.Second)
				r := rssKiB(b, p.cmd.Process.Pid)
				if rss != 0 && r >= rss-rss/100 && r <= rss+rss/100 {
					rss = r
					break
				}
				rss = r
			}
			for i := 0; i < b.N; i++ {
				rss = min(rss, rssKiB(b, p.cmd.Process.Pid))
			}
			c := api.NewUnixClient(filepath.Join(filepath.Dir(cfgPath), "api.sock"))
			text, err := c.Metrics(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			res, err := c.Reload(b.Context(), api.ReloadRequest{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.Took, "ms-reload")
			for _, l := range strings.Split(p.out.String(), "\n") {
				if strings.Contains(l, "firewall table installed") || strings.Contains(l, "msg=ready") {
					b.Log(l)
				}
			}
			b.ReportMetric(metric(text, "go_memstats_heap_inuse_bytes", nil)/(1<<20), "MiB-heap-inuse")
			b.ReportMetric(float64(ready)/1024, "MiB-RSS-at-ready")
			b.ReportMetric(float64(rss)/1024, "MiB-RSS-idle")
			if learnedN > 0 && !strings.Contains(p.out.String(), fmt.Sprintf("restored_entries=%d", learnedN)) {
				b.Errorf("pinholed did not restore %d entries:\n%s", learnedN, lastLines(p.out.String(), 20))
			}
		})
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// rssKiB reads VmRSS of a process.
func rssKiB(b testing.TB, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("VmRSS:")); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(v)), "kB")))
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// writeBulkConfig writes a config of apps identified by uid, each allowed
// "*.appN.test", and a learned-state snapshot of learnedN names (one
// address each, an hour left) spread over the apps.
func writeBulkConfig(b testing.TB, apps, learnedN int) string {
	b.Helper()
	dir := b.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `profile: {name: minimal}
dns:
  upstreams: [127.0.0.1:53]
  max_addresses_per_app: %d
  ttl_ceiling: 2h
api:
  socket: %s
  group: ""
state_dir: %s
log: {level: info}
apps:
`, max(4096, learnedN/apps), filepath.Join(dir, "api.sock"), filepath.Join(dir, "state"))
	for i := range apps {
		name := fmt.Sprintf("app%d", i)
		writeFile(b, filepath.Join(dir, name+".json"), fmt.Sprintf(`{"SchemaVersion": 1, "Name": %q, "ComponentId": "3f1c2a8e-6b0d-4c57-9e21-5a7d4b9c0e%02d",
 "EntryPoint": "/bin/app", "CmdArgs": [], "ApplicationType": "Default",
 "Capabilities": {"AllowedConnections": ["*.%s.test", "api.%s.example", "192.0.2.%d"], "AllowedTcpServerPorts": [%d]}}`,
			name, i, name, name, i+1, 8000+i))
		fmt.Fprintf(&cfg, "  - name: %s\n    manifest: %s.json\n    uid: %d\n", name, name, 41000+i)
	}
	cfgPath := filepath.Join(dir, "pinhole.yaml")
	writeFile(b, cfgPath, cfg.String())
	if learnedN == 0 {
		return cfgPath
	}
	c, err := config.Load(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	p, _, err := policy.Load(c)
	if err != nil {
		b.Fatal(err)
	}
	s := learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS), StateDir: c.StateDir})
	if _, err := s.Restore(p); err != nil {
		b.Fatal(err)
	}
	base := netip.MustParseAddr("198.18.0.0").As4()
	for i := range learnedN {
		a := base
		a[1] += byte(i >> 16)
		a[2] = byte(i >> 8)
		a[3] = byte(i)
		s.Learn(learned.Learning{App: fmt.Sprintf("app%d", i%apps), Name: fmt.Sprintf("h%d.app%d.test", i, i%apps),
			Addrs: []learned.AddrTTL{{Addr: netip.AddrFrom4(a), TTL: time.Hour}}})
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return cfgPath
}
