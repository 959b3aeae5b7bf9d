package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func TestWriteRulesets(t *testing.T) {
	uid := uint32(1001)
	rs := []firewall.Ruleset{{
		Hook: "OUTPUT", IsValid: true, Type: "filter", Chain: "output", Policy: "drop",
		Rules: []firewall.Rule{
			{Action: "accept", Protocol: "any", Chain: "output", Match: `oif "lo" accept`, Comment: "loopback", Packets: 12, Bytes: 3 << 20},
			{Action: "vmap", Protocol: "any", Chain: "output", Match: "meta skuid vmap @out_uid", Comment: "apps by uid", UID: &uid},
		},
	}}
	var out bytes.Buffer
	if err := writeRulesets(&out, rs); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"OUTPUT (filter chain output, policy drop)",
		"  CHAIN   PACKETS  BYTES  COMMENT      RULE",
		`  output  12       3.0Mi  loopback     oif "lo" accept`,
		"  output  0        0      apps by uid  meta skuid vmap @out_uid",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimRight(out.String(), "\n"), "\n")); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	out.Reset()
	if err := writeRulesetsJSON(&out, rs); err != nil {
		t.Fatal(err)
	}
	var back struct{ Rulesets []firewall.Ruleset }
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rs, back.Rulesets); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	for _, key := range []string{`"hook": "OUTPUT"`, `"isValid": true`, `"packets": 12`, `"uid": 1001`, `"comment": "loopback"`} {
		if !strings.Contains(out.String(), key) {
			t.Errorf("JSON lacks %s:\n%s", key, out.String())
		}
	}
}

// TestFirewallShowNetns installs a table in a network namespace of its own
// and reads it back through the command.
func TestFirewallShowNetns(t *testing.T) {
	if os.Geteuid() != 0 || runtime.GOOS != "linux" {
		t.Skip("needs root on Linux: creates a network namespace")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "ph-cli-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	path := "/run/netns/" + name

	out, code := runCLI(t, "firewall", "show", "--netns", path)
	if code != 1 || !strings.Contains(out, "no pinhole table") {
		t.Errorf("empty namespace: exit %d\n%s", code, out)
	}

	ns, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	fw, err := firewall.New(firewall.Options{NetNSFd: int(ns.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	p := policy.Finish(&policy.Policy{
		Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedDeny, SystemMark: policy.DefaultSystemMark, NFLOGGroup: 100,
		Apps: []*policy.App{{Name: "weather", Identity: policy.Identity{Kind: policy.ByUID, UID: 1001}, DNSPort: 5300,
			Addrs: []policy.AddrRule{{Addr: netip.MustParseAddr("198.18.0.10")}}}},
	})
	if err := fw.Apply(p, nil); err != nil {
		t.Fatal(err)
	}

	out, code = runCLI(t, "firewall", "show", "--netns", path)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range [][]string{
		{"INPUT (filter chain input, policy drop)"},
		{"OUTPUT (nat chain nat_output, policy accept)"},
		{"out_weather", "allowed IPv4 destinations", "ip daddr @v4_weather accept"},
		{"out_weather", "deny: log", `log prefix "ph deny out weather" group 100`},
	} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("no line with %q:\n%s", want, out)
		}
	}
	out, code = runCLI(t, "firewall", "show", "--json", "--netns", path)
	var got struct{ Rulesets []firewall.Ruleset }
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Rulesets) != 4 {
		t.Errorf("--json: exit %d, %v, %d rulesets\n%s", code, err, len(got.Rulesets), out)
	}
}
