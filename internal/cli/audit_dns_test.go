package cli

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// TestWriteAuditDNS: an audit-mode lookup reads as the name asked, what
// enforce mode would have done and the addresses answered; the connection
// after it names the host.
func TestWriteAuditDNS(t *testing.T) {
	var addrs []netip.Addr
	for i := range 6 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}))
	}
	recs := []audit.Record{
		{Kind: audit.KindDNS, Last: now, Count: 2, App: "alpha", Verdict: logprefix.Audit, Name: "tracker.example", QType: "A",
			Addrs: addrs, Reason: "would be blocked: not in the app's AllowedConnections"},
		{Last: now, Count: 1, App: "alpha", Verdict: logprefix.Audit, Direction: logprefix.Out, Proto: audit.ProtoTCP,
			Dst: addrs[0], DstPort: 443, Hosts: []string{"tracker.example"}},
	}
	var b bytes.Buffer
	if err := writeAudit(&b, recs, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want a header and 2", len(lines))
	}
	for _, want := range []string{"audit", " out ", " dns ", "lookup tracker.example A", " 2 ",
		"would be blocked: not in the app's AllowedConnections; answered 198.18.0.1, 198.18.0.2, 198.18.0.3, 198.18.0.4, 2 more"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("dns line %q lacks %q", lines[1], want)
		}
	}
	if !strings.Contains(lines[2], "198.18.0.1:443") || !strings.HasSuffix(lines[2], "tracker.example") {
		t.Errorf("connection line %q lacks the address or the host", lines[2])
	}
	if line := auditLine(recs[0], now); !strings.Contains(line, " dns     lookup tracker.example A") {
		t.Errorf("follow line %q", line)
	}
}

// TestWriteReloadUpstreams: a reload says which DNS servers are in use,
// and that there are none.
func TestWriteReloadUpstreams(t *testing.T) {
	for _, tt := range []struct {
		ups  []string
		want string
	}{
		{[]string{"192.0.2.53:53", "[2001:db8::53]:53"}, "dns upstreams: 192.0.2.53:53, [2001:db8::53]:53\n"},
		{[]string{}, "dns upstreams: none (queries of allowed names get SERVFAIL)\n"},
	} {
		var b bytes.Buffer
		writeReload(&b, api.ReloadResult{Apps: 1, DNSUpstreams: tt.ups})
		if !strings.Contains(b.String(), tt.want) {
			t.Errorf("reload output %q lacks %q", b.String(), tt.want)
		}
	}
}
