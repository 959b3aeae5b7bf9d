package lab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/examples"
	"github.com/pinhole-net/pinhole/internal/config"
)

var testLayout = Layout{Name: "pinhole-lab"}

// labify runs DeviceConfig on src as if it were /src/pinhole.yaml and
// parses the result.
func labify(t *testing.T, src string) (*config.Config, *config.Config, []App, string) {
	t.Helper()
	in, err := config.Parse("/src/pinhole.yaml", []byte(src))
	if err != nil {
		t.Fatalf("source config: %v", err)
	}
	uids := allocUIDs(len(in.Apps), func(uint32) bool { return false })
	out, apps, err := DeviceConfig([]byte(src), in, testLayout, uids)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse("/run/pinhole-lab/device.yaml", out)
	if err != nil {
		t.Fatalf("device config does not parse: %v\n%s", err, out)
	}
	return in, got, apps, string(out)
}

func TestDeviceConfigSample(t *testing.T) {
	t.Parallel()
	src, err := examples.FS.ReadFile("pinhole.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, got, apps, text := labify(t, string(src))

	wantApps := []App{
		{Name: "telemetry", Kind: "uid", UID: 64201, Cgroup: "pinhole-lab/apps/telemetry", Manifest: "/src/apps/telemetry/app_manifest.json"},
		{Name: "webfetch", Kind: "cgroup", UID: 64202, Cgroup: "pinhole-lab/apps/webfetch", Manifest: "/src/apps/webfetch/app_manifest.json"},
		{Name: "intruder", Kind: "uid", UID: 64203, Cgroup: "pinhole-lab/apps/intruder", Manifest: "/src/apps/intruder/app_manifest.json"},
	}
	if diff := cmp.Diff(wantApps, apps); diff != "" {
		t.Errorf("apps (-want +got):\n%s", diff)
	}
	wantCfgApps := []config.App{
		{Name: "telemetry", Manifest: "/src/apps/telemetry/app_manifest.json", Identity: config.Identity{Kind: config.IdentityUID, UID: 64201}},
		{Name: "webfetch", Manifest: "/src/apps/webfetch/app_manifest.json", Identity: config.Identity{Kind: config.IdentityCgroup, Cgroup: "pinhole-lab/apps/webfetch"}},
		{Name: "intruder", Manifest: "/src/apps/intruder/app_manifest.json", Identity: config.Identity{Kind: config.IdentityUID, UID: 64203}},
	}
	if diff := cmp.Diff(wantCfgApps, got.Apps); diff != "" {
		t.Errorf("config apps (-want +got):\n%s", diff)
	}
	checkLabKeys(t, got)

	// What the lab does not change stays as written.
	if got.Mode != in.Mode || got.Unmanaged != in.Unmanaged || got.SystemMark != in.SystemMark ||
		got.DNS.StubPortBase != in.DNS.StubPortBase || got.Firewall != in.Firewall || got.Profile.Name != in.Profile.Name ||
		len(got.DNS.AllowPrivate) != len(in.DNS.AllowPrivate) || got.API.MetricsListen != in.API.MetricsListen {
		t.Errorf("the lab changed keys it should keep:\n in: %+v\nout: %+v", in, got)
	}
	for _, want := range []string{"# pinholed configuration (usually", "# The endpoint catalog profile", "# The lab changed:"} {
		if !strings.Contains(text, want) {
			t.Errorf("device config lacks %q", want)
		}
	}
}

// checkLabKeys checks the keys the lab always sets.
func checkLabKeys(t *testing.T, got *config.Config) {
	t.Helper()
	wantUp := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if diff := cmp.Diff(wantUp, got.DNS.Upstreams, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("upstreams (-want +got):\n%s", diff)
	}
	if got.StateDir != "/run/pinhole-lab/pinholed" || got.API.Socket != "/run/pinhole-lab/api.sock" || got.API.Group != "" {
		t.Errorf("state_dir %q, api.socket %q, api.group %q", got.StateDir, got.API.Socket, got.API.Group)
	}
	if got.Time.Enabled || got.ServiceLink.Enabled || got.Proxy.Enabled {
		t.Errorf("time %v, service link %v, proxy %v: want all off", got.Time.Enabled, got.ServiceLink.Enabled, got.Proxy.Enabled)
	}
}

func TestDeviceConfigShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
	}{
		{"minimal", "apps:\n  - name: a\n    manifest: a.json\n    user: someone\n"},
		{"empty sections", "api:\ndns:\ntime:\napps:\n  - name: a\n    manifest: /abs/a.json\n    cgroup: system.slice/a.service\n"},
		{"resolv_conf and upstream keys", "dns:\n  resolv_conf: /etc/other.conf # the old one\n" +
			"time:\n  enabled: true\n  source: custom\n  servers: [ntp.example]\n" +
			"service_link:\n  enabled: true\n  serial: /dev/ttyS1\n" +
			"proxy:\n  address: proxy.example\n  port: 3128\n" +
			"apps:\n  - {name: a, manifest: a.json, uid: 1001}\n  - {name: b, manifest: b.json, cgroup: x/y}\n"},
		{"no apps", "mode: audit\n"},
		{"empty file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in, got, apps, _ := labify(t, tt.src)
			checkLabKeys(t, got)
			if len(apps) != len(in.Apps) || len(got.Apps) != len(in.Apps) {
				t.Fatalf("%d apps in, %d out", len(in.Apps), len(got.Apps))
			}
			for i, a := range got.Apps {
				if a.Manifest != in.Apps[i].Manifest {
					t.Errorf("app %s: manifest %s, want %s", a.Name, a.Manifest, in.Apps[i].Manifest)
				}
				wantKind := config.IdentityUID
				if in.Apps[i].Identity.Kind == config.IdentityCgroup {
					wantKind = config.IdentityCgroup
				}
				if a.Identity.Kind != wantKind {
					t.Errorf("app %s: identity %s, want kind %s", a.Name, a.Identity, wantKind)
				}
			}
			if got.Mode != in.Mode {
				t.Errorf("mode %s, want %s", got.Mode, in.Mode)
			}
		})
	}
}

func TestDeviceConfigErrors(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("/src/p.yaml", []byte("apps:\n  - {name: a, manifest: a.json, uid: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DeviceConfig([]byte("apps: []\n"), cfg, testLayout, []uint32{64201}); err == nil {
		t.Error("apps that do not match the loaded config: no error")
	}
	if _, _, err := DeviceConfig([]byte("- a\n"), cfg, testLayout, []uint32{64201}); err == nil {
		t.Error("a YAML list: no error")
	}
	if _, _, err := DeviceConfig([]byte("apps: []\n"), cfg, testLayout, nil); err == nil {
		t.Error("too few UIDs: no error")
	}
}

func TestAllocUIDs(t *testing.T) {
	t.Parallel()
	taken := map[uint32]bool{64201: true, 64203: true}
	got := allocUIDs(3, func(u uint32) bool { return taken[u] })
	if diff := cmp.Diff([]uint32{64202, 64204, 64205}, got); diff != "" {
		t.Errorf("UIDs (-want +got):\n%s", diff)
	}
}

// FuzzDeviceConfig: whatever config the user writes, if pinhole accepts it,
// the lab's rewrite of it is accepted too and keeps the apps.
func FuzzDeviceConfig(f *testing.F) {
	src, err := examples.FS.ReadFile("pinhole.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(src))
	f.Add("apps:\n  - name: a\n    manifest: a.json\n    user: someone\n")
	f.Add("api:\ndns:\n  resolv_conf: x\napps:\n  - {name: b, manifest: b.json, cgroup: x/y}\n")
	f.Add("# only a comment\n")
	f.Add("api: &a {socket: /x}\nlog: {level: debug}\n")
	f.Fuzz(func(t *testing.T, src string) {
		in, err := config.Parse("/src/pinhole.yaml", []byte(src))
		if err != nil {
			return
		}
		uids := allocUIDs(len(in.Apps), func(uint32) bool { return false })
		out, apps, err := DeviceConfig([]byte(src), in, testLayout, uids)
		if err != nil {
			// YAML that config accepts but whose apps are not a plain
			// list of mappings (anchors, aliases) may be refused, but
			// only with an error.
			return
		}
		got, err := config.Parse("/run/pinhole-lab/device.yaml", out)
		if err != nil {
			t.Fatalf("accepted config, rejected rewrite: %v\n--- in\n%s\n--- out\n%s", err, src, out)
		}
		if len(got.Apps) != len(in.Apps) || len(apps) != len(in.Apps) {
			t.Fatalf("%d apps in, %d out", len(in.Apps), len(got.Apps))
		}
		if got.Time.Enabled || got.ServiceLink.Enabled || got.API.Socket != "/run/pinhole-lab/api.sock" {
			t.Fatalf("lab keys not set:\n%s", out)
		}
	})
}
