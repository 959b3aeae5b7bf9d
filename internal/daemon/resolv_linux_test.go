package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/netnstest"
)

// useResolvConf rewrites the world's config to take the upstreams from a
// resolv.conf file in the test's directory, which it creates with data.
func (w *world) useResolvConf(t *testing.T, data string) string {
	t.Helper()
	path := filepath.Join(w.dir, "resolv.conf")
	writeFile(t, path, data)
	cfg, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	old := "  upstreams: [" + w.dnsAddr.String() + "]\n"
	if !strings.Contains(string(cfg), old) {
		t.Fatalf("config has no %q", old)
	}
	writeFile(t, w.cfgPath, strings.Replace(string(cfg), old, "  resolv_conf: "+path+"\n", 1))
	return path
}

// TestResolvConfAppears: pinholed starts with an empty resolv.conf (before
// DHCP), answers the app's allowed name SERVFAIL and says why; when a
// nameserver line arrives (by rename, as DHCP clients write it) the name
// resolves and connects without a manual reload.
func TestResolvConfAppears(t *testing.T) {
	w := newWorld(t)
	path := w.useResolvConf(t, "# no lease yet\nsearch lan\n")
	startPinholed(t, w.cfgPath)

	if _, code := curl(t, w.alpha, "http://www.alpha.test/"); code != curlNoHost {
		t.Errorf("alpha -> www.alpha.test without upstreams: curl exit %d, want %d", code, curlNoHost)
	}
	text, err := w.client().Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v := metric(text, "pinhole_dns_queries_total", map[string]string{"app": "alpha", "verdict": "no_upstream"}); v < 1 {
		t.Errorf("pinhole_dns_queries_total{alpha,no_upstream} = %v, want >= 1", v)
	}
	st, err := w.client().Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(st.Problems, "\n"), "no upstream DNS servers") {
		t.Errorf("status problems %q lack the missing upstreams", st.Problems)
	}

	tmp := path + ".new"
	writeFile(t, tmp, "nameserver "+w.dnsAddr.String()+"\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// The poll is 30 s: within 10 s only inotify can have seen the change.
	netnstest.WaitFor(t, 10*time.Second, func() bool {
		ds, err := w.client().DNSStats(t.Context())
		return err == nil && len(ds.Upstreams) == 1 && ds.Upstreams[0].Addr.Addr() == w.dnsAddr
	})
	if status, code := curl(t, w.alpha, "http://www.alpha.test/"); code != 0 || status != "200" {
		t.Errorf("after resolv.conf got a nameserver, alpha -> www.alpha.test: status %q exit %d, want 200", status, code)
	}
	if st, err := w.client().Status(t.Context()); err != nil || strings.Contains(strings.Join(st.Problems, "\n"), "no upstream DNS servers") {
		t.Errorf("status after the servers arrived: %v, problems %q", err, st.Problems)
	}
}
