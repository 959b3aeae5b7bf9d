package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const goodManifest = `{"SchemaVersion":1,"Name":"a","ComponentId":"11111111-2222-3333-4444-555555555555",
"EntryPoint":"/bin/app","CmdArgs":[],"Capabilities":{"AllowedConnections":["Example.com","*.cdn.example.net","192.0.2.9","mqtt.example.org:8883"],
"AllowedTcpServerPorts":[8080]},"ApplicationType":"Default"}`

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.json", goodManifest)
	writeFile(t, dir, "bad.json", strings.Replace(goodManifest, "Example.com", "CHANGE THIS", 1))
	good := writeFile(t, dir, "good.yaml", "dns: {upstreams: [192.0.2.53]}\napps:\n- {name: a, manifest: a.json, uid: 1001}\n")
	badManifest := writeFile(t, dir, "badm.yaml", "dns: {upstreams: [192.0.2.53]}\napps:\n- {name: a, manifest: bad.json, uid: 1001}\n")
	conflict := writeFile(t, dir, "conflict.yaml", "dns: {upstreams: [192.0.2.53]}\napps:\n- {name: a, manifest: a.json, uid: 1001}\n- {name: b, manifest: a.json, uid: 1002}\n")
	badKey := writeFile(t, dir, "badkey.yaml", "dns: {upstream: [192.0.2.53]}\n")

	tests := []struct {
		file string
		code int
		want []string
	}{
		{good, 0, []string{"ok: profile azure-sphere, mode enforce, unmanaged deny, 1 app"}},
		{badManifest, 1, []string{"bad.json:2:", `"CHANGE THIS"`, "placeholder"}},
		{conflict, 1, []string{`TCP server port 8080 is claimed by both app "a" and app "b"`}},
		{badKey, 1, []string{"badkey.yaml:1:", "upstream"}},
	}
	for _, tt := range tests {
		out, code := runCLI(t, "config", "check", tt.file)
		if code != tt.code {
			t.Errorf("config check %s: exit %d, want %d\n%s", tt.file, code, tt.code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("config check %s: output lacks %q:\n%s", tt.file, w, out)
			}
		}
	}
}

func TestPolicyShow(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.json", goodManifest)
	cfg := writeFile(t, dir, "p.yaml", "profile: {name: minimal}\ndns: {upstreams: [192.0.2.53]}\napps:\n- {name: a, manifest: a.json, cgroup: pinhole/a}\n")

	out, code := runCLI(t, "policy", "show", "--config", cfg)
	if code != 0 {
		t.Fatalf("policy show: exit %d\n%s", code, out)
	}
	for _, w := range []string{"a  (cgroup pinhole/a, DNS stub port 5300)", "*.cdn.example.net", "mqtt.example.org", "8883", "serves: tcp [8080]"} {
		if !strings.Contains(out, w) {
			t.Errorf("policy show lacks %q:\n%s", w, out)
		}
	}

	out, code = runCLI(t, "policy", "show", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("policy show --json: exit %d\n%s", code, out)
	}
	var got policyJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("policy show --json is not JSON: %v\n%s", err, out)
	}
	if len(got.Identities) != 2 || got.Identities[0].Name != "system" {
		t.Fatalf("identities = %+v, want system then a", got.Identities)
	}
	var reach []string
	for _, r := range got.Identities[1].Reach {
		reach = append(reach, r.Destination+" "+r.Kind+" "+strings.Join(r.Ports, ","))
	}
	want := []string{"example.com host any", "*.cdn.example.net wildcard any", "mqtt.example.org host 8883", "192.0.2.9 ipv4 any"}
	if diff := cmp.Diff(want, reach); diff != "" {
		t.Errorf("app a reach (-want +got):\n%s", diff)
	}
}

func TestRunDryRun(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.json", goodManifest)
	cfg := writeFile(t, dir, "p.yaml", "apps:\n- {name: a, manifest: a.json, cgroup: pinhole/a}\n- {name: b, manifest: a.json, uid: 4321}\n")
	out, code := runCLI(t, "run", "--config", cfg, "--app", "a", "--dry-run", "--", "curl", "-s", "x")
	if code != 0 || !strings.Contains(out, `would run ["curl" "-s" "x"] as app a: cgroup pinhole/a`) {
		t.Errorf("run --dry-run app a: exit %d, output:\n%s", code, out)
	}
	out, code = runCLI(t, "run", "--config", cfg, "--app", "b", "--dry-run", "--", "true")
	if code != 0 || !strings.Contains(out, "as app b: uid 4321") {
		t.Errorf("run --dry-run app b: exit %d, output:\n%s", code, out)
	}
}
