package daemon

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/netnstest"
)

// TestAuditModeResolves: in audit mode an app resolves and reaches a host
// its manifest does not list; GET /audit has the lookup (would be blocked)
// and the connection naming the host, and the address was not opened in
// the app's set (the firewall logged the connection).
func TestAuditModeResolves(t *testing.T) {
	w := newWorld(t)
	cfg, err := os.ReadFile(w.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, w.cfgPath, "mode: audit\n"+string(cfg))
	startPinholed(t, w.cfgPath)

	var recs []audit.Record
	var dnsRec, connRec *audit.Record
	// The audit reader binds NFLOG shortly after start: retry the
	// connection until the audit has it.
	netnstest.WaitFor(t, 15*time.Second, func() bool {
		if status, code := curl(t, w.alpha, "http://new.alpha.test/"); code != 0 || status != "200" {
			t.Fatalf("audit mode: alpha -> new.alpha.test (not in its manifest): status %q exit %d, want 200", status, code)
		}
		recs, err = w.client().Audit(t.Context(), api.AuditQuery{App: "alpha"})
		if err != nil {
			t.Fatal(err)
		}
		dnsRec, connRec = nil, nil
		for i := range recs {
			r := &recs[i]
			switch {
			case r.Kind == audit.KindDNS && r.Name == "new.alpha.test" && r.QType == "A":
				dnsRec = r
			case r.Kind == audit.KindPacket && r.Dst == w.newHost && r.DstPort == 80:
				connRec = r
			}
		}
		return dnsRec != nil && connRec != nil
	})
	t.Logf("audit records: %+v", recs)
	if string(dnsRec.Verdict) != "audit" || !slices.Contains(dnsRec.Addrs, w.newHost) || !strings.Contains(dnsRec.Reason, "would be blocked") {
		t.Errorf("dns record %+v: want verdict audit, address %s, a reason saying it would be blocked", dnsRec, w.newHost)
	}
	if string(connRec.Verdict) != "audit" || !slices.Contains(connRec.Hosts, "new.alpha.test") {
		t.Errorf("connection record %+v: want verdict audit naming new.alpha.test", connRec)
	}
	a, err := w.client().App(t.Context(), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range a.Learned {
		if l.Name == "new.alpha.test" {
			t.Errorf("alpha learned new.alpha.test in audit mode: %+v", l)
		}
	}
	out, err := runCLI(t, "audit", "--socket", w.sock, "--app", "alpha")
	t.Logf("pinhole audit --app alpha:\n%s", out)
	if err != nil || !strings.Contains(out, "lookup new.alpha.test A") || !strings.Contains(out, w.newHost.String()+":80") {
		t.Errorf("pinhole audit (%v) lacks the lookup or the connection", err)
	}
	text, err := w.client().Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v := metric(text, "pinhole_dns_queries_total", map[string]string{"app": "alpha", "verdict": "audit"}); v < 1 {
		t.Errorf("pinhole_dns_queries_total{alpha,audit} = %v, want >= 1", v)
	}
}
