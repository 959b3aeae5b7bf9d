package daemon

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func testApp(t *testing.T, name string, hosts ...string) *policy.App {
	t.Helper()
	a := &policy.App{Name: name, Identity: policy.Identity{Kind: policy.ByUID, UID: 1000}, DNSPort: 5300}
	for _, h := range hosts {
		p, err := hostname.ParsePattern(h)
		if err != nil {
			t.Fatal(err)
		}
		a.Hosts = append(a.Hosts, policy.HostRule{Pattern: p, Source: "test"})
	}
	return a
}

func TestDiffApps(t *testing.T) {
	t.Parallel()
	old := policy.Finish(&policy.Policy{Apps: []*policy.App{testApp(t, "a", "x.example"), testApp(t, "b", "y.example"), testApp(t, "c", "z.example")}})
	nu := policy.Finish(&policy.Policy{Apps: []*policy.App{testApp(t, "a", "x.example"), testApp(t, "b", "y.example", "w.example"), testApp(t, "d")}})
	added, removed, changed := diffApps(old, nu)
	got := [][]string{added, removed, changed}
	if diff := cmp.Diff([][]string{{"d"}, {"c"}, {"b"}}, got); diff != "" {
		t.Errorf("added, removed, changed (-want +got):\n%s", diff)
	}
}

func TestRestartRequired(t *testing.T) {
	t.Parallel()
	mk := func(edit func(*config.Config, *policy.Policy)) *state {
		cfg := config.Default()
		p := &policy.Policy{SystemMark: 1, DNS: policy.DNS{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}}}
		edit(cfg, p)
		return &state{cfg: cfg, pol: p}
	}
	old := mk(func(*config.Config, *policy.Policy) {})
	if got := restartRequired(old, mk(func(c *config.Config, _ *policy.Policy) { c.Log.Level = 4 })); len(got) != 0 {
		t.Errorf("log level change: %v, want nothing (it applies on reload)", got)
	}
	got := restartRequired(old, mk(func(c *config.Config, p *policy.Policy) {
		c.API.Socket = "/run/x.sock"
		c.StateDir = "/tmp/x"
		p.DNS.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.54:53")}
		p.SystemMark = 2
	}))
	// DNS upstreams and the system mark apply on reload.
	if diff := cmp.Diff([]string{"api.socket", "state_dir"}, got); diff != "" {
		t.Errorf("restart required (-want +got):\n%s", diff)
	}
}

func TestAppCounters(t *testing.T) {
	t.Parallel()
	rs := []firewall.Ruleset{
		{Hook: "OUTPUT", Rules: []firewall.Rule{
			{Chain: "output", Action: "accept", Packets: 100},
			{Chain: "out_a", App: "a", Action: "accept", Comment: "allowed IPv4 destinations", Packets: 3, Bytes: 180},
			{Chain: "out_a", App: "a", Action: "accept", Comment: "allowed IPv6 destinations", Packets: 1, Bytes: 80},
			{Chain: "out_a", App: "a", Action: "log", Comment: "deny: log", Packets: 9},
			{Chain: "out_a", App: "a", Action: "reject", Comment: "deny: tcp reset", Packets: 2, Bytes: 120},
			{Chain: "out_a", App: "a", Action: "reject", Comment: "deny: icmp administratively prohibited", Packets: 5, Bytes: 300},
			{Chain: "out_b", App: "b", Action: "accept", Comment: "audit: accept", Packets: 7, Bytes: 70},
		}},
		{Hook: "INPUT", Rules: []firewall.Rule{
			{Chain: "in_a", App: "a", Action: "drop", Comment: "deny: drop", Packets: 4, Bytes: 40},
		}},
	}
	want := map[counterKey][2]uint64{
		{"a", "out", "allowed"}: {4, 260},
		{"a", "out", "denied"}:  {7, 420},
		{"b", "out", "audit"}:   {7, 70},
		{"a", "in", "denied"}:   {4, 40},
	}
	if diff := cmp.Diff(want, appCounters(rs), cmp.AllowUnexported(counterKey{})); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string][2]uint64{"a": {4, 11}, "b": {0, 7}}, packetsByApp(rs)); diff != "" {
		t.Errorf("per app (-want +got):\n%s", diff)
	}
}

func TestFailure(t *testing.T) {
	t.Parallel()
	ce := &config.Error{Problems: []config.Problem{
		{File: "p.yaml", Line: 3, Column: 1, Path: "dns.ttl", Msg: "unknown key"},
		{File: "p.yaml", Line: 9, Column: 5, Path: "apps[0].uid", Msg: "0 is root"},
	}}
	e := failure("config p.yaml", ce)
	if e.Status != 422 || e.Code != api.CodeReloadFailed || len(e.Details) != 2 || !strings.Contains(e.Message, "2 problems") {
		t.Errorf("two problems: %+v", e)
	}
	e = failure("manifests", errors.Join(errors.New("a.json:1:1: bad")))
	if e.Message != "manifests: a.json:1:1: bad" || e.Details != nil {
		t.Errorf("one problem: %+v", e)
	}
}

func TestProxyStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	cfg := config.Proxy{Enabled: true, Address: config.Host{Name: "proxy.example"}, Port: 3128, Auth: config.ProxyBasic, Username: "dev", PasswordFile: pwFile}
	ps, err := loadProxy(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ps.get()
	want := api.ProxySettings{Enabled: true, Address: "proxy.example", Port: 3128, AuthenticationType: "basic", Username: "dev", Password: "s3cret", NoProxyAddresses: []string{}}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("from config (-want +got):\n%s", diff)
	}
	// The API's settings win, also after a restart and a config change.
	apiSet := api.ProxySettings{Enabled: false, Address: "192.0.2.8", Port: 8080, AuthenticationType: "anonymous", NoProxyAddresses: []string{}}
	if err := ps.set(&apiSet); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, proxyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("proxy file: %v, %v", fi, err)
	}
	ps.configChanged(cfg)
	if got, _ := ps.get(); got.Address != "192.0.2.8" {
		t.Errorf("config change overrode the API's settings: %+v", got)
	}
	ps2, err := loadProxy(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ps2.get(); !ok || !cmp.Equal(apiSet, got) {
		t.Errorf("after restart: %+v, %v", got, ok)
	}
	if err := ps2.set(nil); err != nil {
		t.Fatal(err)
	}
	ps3, _ := loadProxy(dir, cfg)
	if _, ok := ps3.get(); ok {
		t.Error("deleted settings came back from the config after restart")
	}
}

// fakeCgroups is a cgroup tree and a firewall for the watcher.
type fakeCgroups struct {
	mu   sync.Mutex
	ids  map[string]uint64
	sets []string
}

func (f *fakeCgroups) id(rel string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.ids[rel]; ok {
		return id, nil
	}
	return 0, fs.ErrNotExist
}

func (f *fakeCgroups) SetCgroupID(app string, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, app+"="+strconv.FormatUint(id, 10))
	return nil
}

func (f *fakeCgroups) set(rel string, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == 0 {
		delete(f.ids, rel)
	} else {
		f.ids[rel] = id
	}
}

func (f *fakeCgroups) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sets...)
}

func TestCgWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeCgroups{ids: map[string]uint64{"apps.slice": 5, "apps.slice/a.service": 10}}
		var buf bytes.Buffer
		w := newCgWatcher(f, f.id, newLogger(&buf, config.LogText, new(slog.LevelVar)))
		p := policy.Finish(&policy.Policy{Apps: []*policy.App{
			{Name: "a", Identity: policy.Identity{Kind: policy.ByCgroup, Cgroup: "apps.slice/a.service"}},
			{Name: "b", Identity: policy.Identity{Kind: policy.ByCgroup, Cgroup: "apps.slice/b.service"}},
			{Name: "u", Identity: policy.Identity{Kind: policy.ByUID, UID: 1000}},
		}})
		w.setPolicy(p)
		ctx := t.Context()
		go w.run(ctx, nil)
		synctest.Wait()
		if diff := cmp.Diff([]string{"a=10"}, f.calls()); diff != "" {
			t.Fatalf("first scan (-want +got):\n%s", diff)
		}
		// a restarts (new id), b appears: the next poll hands both over.
		f.set("apps.slice/a.service", 11)
		f.set("apps.slice/b.service", 20)
		time.Sleep(w.poll)
		synctest.Wait()
		got := f.calls()
		if len(got) != 3 || !strings.Contains(strings.Join(got[1:], " "), "a=11") || !strings.Contains(strings.Join(got[1:], " "), "b=20") {
			t.Fatalf("after changes: %v", got)
		}
		if w.idOf("a") != 11 || w.idOf("b") != 20 {
			t.Errorf("idOf = %d, %d", w.idOf("a"), w.idOf("b"))
		}
		// Nothing changed: no calls. A reload makes it hand ids over again.
		time.Sleep(w.poll)
		synctest.Wait()
		if n := len(f.calls()); n != 3 {
			t.Errorf("calls without change: %v", f.calls())
		}
		w.setPolicy(p)
		synctest.Wait()
		if n := len(f.calls()); n != 5 {
			t.Errorf("calls after setPolicy: %v", f.calls())
		}
		if !strings.Contains(buf.String(), "app=b") {
			t.Errorf("missing cgroup of b not logged:\n%s", buf.String())
		}
	})
}

func TestWatchDir(t *testing.T) {
	t.Parallel()
	f := &fakeCgroups{ids: map[string]uint64{"a": 1, "a/b": 2}}
	w := newCgWatcher(f, f.id, slog.New(slog.DiscardHandler))
	for rel, want := range map[string]string{"a/b/c": "a/b", "a/b/c/d": "a/b", "a/x": "a", "x/y": "", "top": ""} {
		if got := w.watchDir(rel); got != want {
			t.Errorf("watchDir(%q) = %q, want %q", rel, got, want)
		}
	}
}

func TestMainFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"--version"}, &out, &errb); code != ExitOK || !strings.HasPrefix(out.String(), "pinholed ") {
		t.Errorf("--version: %d %q %q", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := Main([]string{"--bogus"}, &out, &errb); code != ExitUsage {
		t.Errorf("--bogus: exit %d, want %d", code, ExitUsage)
	}
	errb.Reset()
	if code := Main([]string{"extra"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), `unexpected argument "extra"`) {
		t.Errorf("extra argument: %d %q", code, errb.String())
	}
	// In the machine's own namespace pinholed refuses without the flag,
	// before it reads anything.
	old := isInitialNetns
	isInitialNetns = func() (bool, error) { return true, nil }
	defer func() { isInitialNetns = old }()
	errb.Reset()
	code := Main([]string{"--config", "/nonexistent/pinhole.yaml"}, &out, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "refusing to start in this machine's own network namespace") || !strings.Contains(errb.String(), "--allow-host-netns") {
		t.Errorf("initial netns: exit %d\n%s", code, errb.String())
	}
}
