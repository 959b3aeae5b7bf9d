package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/netnstest"
)

// curl's exit codes that mean "blocked" here.
const (
	curlNoHost  = 6 // could not resolve (NXDOMAIN from the stub)
	curlConnect = 7 // could not connect (TCP reset from the firewall)
)

// TestReachAuditMetrics: alpha reaches its host by name, beta does not;
// the audit names beta and the host; pinhole apps shows what alpha learned;
// /metrics counts both.
func TestReachAuditMetrics(t *testing.T) {
	w := newWorld(t)
	p := startPinholed(t, w.cfgPath)

	if status, code := curl(t, w.alpha, "http://www.alpha.test/"); code != 0 || status != "200" {
		t.Fatalf("alpha -> www.alpha.test: status %q exit %d, want 200", status, code)
	}
	if _, code := curl(t, w.beta, "http://www.alpha.test/"); code != curlNoHost {
		t.Errorf("beta resolving alpha's host: curl exit %d, want %d (NXDOMAIN)", code, curlNoHost)
	}
	// The audit reader binds NFLOG shortly after start; retry the denied
	// attempts until the audit has them.
	var audit string
	netnstest.WaitFor(t, 15*time.Second, func() bool {
		if _, code := curl(t, w.beta, "http://beta.test/"); code != curlConnect {
			t.Errorf("beta -> beta.test:80 (only 443 allowed): curl exit %d, want %d", code, curlConnect)
		}
		if _, code := curl(t, w.beta, "http://"+w.www.String()+"/"); code != curlConnect {
			t.Errorf("beta -> alpha's address: curl exit %d, want %d", code, curlConnect)
		}
		var err error
		audit, err = runCLI(t, "audit", "--socket", w.sock, "--app", "beta")
		if err != nil {
			t.Fatalf("pinhole audit: %v\n%s", err, audit)
		}
		return strings.Contains(audit, "beta.test") && strings.Contains(audit, w.www.String()+":80")
	})
	t.Logf("pinhole audit --app beta:\n%s", audit)
	for _, want := range []string{w.betaHost.String() + ":80", "learned by alpha", "denied"} {
		if !strings.Contains(audit, want) {
			t.Errorf("pinhole audit lacks %q", want)
		}
	}
	if t.Failed() {
		return
	}

	apps, err := runCLI(t, "apps", "--socket", w.sock)
	if err != nil {
		t.Fatalf("pinhole apps: %v\n%s", err, apps)
	}
	t.Logf("pinhole apps:\n%s", apps)
	var alphaLine string
	for _, l := range strings.Split(apps, "\n") {
		if strings.HasPrefix(l, "alpha ") {
			alphaLine = l
		}
	}
	if !strings.Contains(alphaLine, "www.alpha.test") {
		t.Errorf("pinhole apps: alpha's row %q does not show www.alpha.test", alphaLine)
	}
	app, err := runCLI(t, "app", "alpha", "--socket", w.sock)
	if err != nil || !strings.Contains(app, w.www.String()) {
		t.Errorf("pinhole app alpha (%v) lacks the learned address %s:\n%s", err, w.www, app)
	}
	t.Logf("pinhole app alpha:\n%s", app)

	// Metrics, on the API and on the TCP listener.
	text, err := w.client().Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + w.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics listener: %v", err)
	}
	tcpText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, src := range []struct{ name, text string }{{"api", text}, {"tcp", string(tcpText)}} {
		for _, m := range []struct {
			name   string
			labels map[string]string
		}{
			{"pinhole_firewall_packets_total", map[string]string{"app": "alpha", "direction": "out", "verdict": "allowed"}},
			{"pinhole_firewall_packets_total", map[string]string{"app": "beta", "direction": "out", "verdict": "denied"}},
			{"pinhole_dns_queries_total", map[string]string{"app": "alpha", "verdict": "allowed"}},
			{"pinhole_dns_queries_total", map[string]string{"app": "beta", "verdict": "blocked"}},
			{"pinhole_audit_packets_total", map[string]string{"app": "beta", "verdict": "deny", "direction": "out"}},
			{"pinhole_learned_entries", map[string]string{"app": "alpha"}},
			{"pinhole_build_info", nil},
		} {
			if v := metric(src.text, m.name, m.labels); v < 1 {
				t.Errorf("%s /metrics: %s%v = %v, want >= 1", src.name, m.name, m.labels, v)
			}
		}
	}

	// The API refuses oversize bodies, unknown fields and wrong methods,
	// with a JSON error and the version header.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", w.sock)
	}}}
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/net/proxy", `{"address": "` + strings.Repeat("x", 70000) + `"}`, http.StatusRequestEntityTooLarge},
		{"POST", "/net/proxy", `{"address": "p.example", "port": 3128, "authenticationType": "anonymous", "colour": "red"}`, http.StatusBadRequest},
		{"POST", "/config/reload", `{"dry_run": true}`, http.StatusBadRequest},
		{"PUT", "/config/reload", ``, http.StatusMethodNotAllowed},
		{"GET", "/apps/nonesuch", ``, http.StatusNotFound},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, "http://pinholed"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("REST-API-Version") == "" || !strings.Contains(string(body), `"error":`) {
			t.Errorf("%s %s: %d %q, want %d with a JSON error", tc.method, tc.path, resp.StatusCode, body, tc.status)
		}
	}

	for _, args := range [][]string{{"status"}, {"firewall", "rules"}, {"interfaces"}} {
		out, err := runCLI(t, append(args, "--socket", w.sock)...)
		if err != nil {
			t.Errorf("pinhole %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("pinhole %s:\n%s", strings.Join(args, " "), out)
	}

	// SIGTERM: a clean stop that leaves the table in place.
	if err := p.stop(); err != nil {
		t.Errorf("pinholed exit after SIGTERM: %v", err)
	}
	if p.notify.count("STOPPING=1") != 1 {
		t.Errorf("no STOPPING=1 notification")
	}
	if out, err := exec.Command("nft", "list", "table", "inet", "pinhole").CombinedOutput(); err != nil {
		t.Errorf("table gone after SIGTERM (%v): %s", err, out)
	}
	if _, code := curl(t, w.beta, "http://"+w.www.String()+"/"); code != curlConnect {
		t.Errorf("after pinholed stopped, beta -> alpha's address: curl exit %d, want %d", code, curlConnect)
	}
}

// TestReload: a broken manifest keeps the old policy and says why; a good
// reload opens the new host, closes the removed one and leaves established
// flows alone; SIGHUP reloads too.
func TestReload(t *testing.T) {
	w := newWorld(t)
	p := startPinholed(t, w.cfgPath)
	if status, code := curl(t, w.alpha, "http://www.alpha.test/"); code != 0 || status != "200" {
		t.Fatalf("alpha -> www.alpha.test: status %q exit %d", status, code)
	}
	hold := w.alpha.StartRole(t, netnstest.Full, "tcp-hold", netip.AddrPortFrom(w.www, 7).String())
	hold.WaitEvents(t, 3, 10*time.Second)

	// Broken manifest: nothing changes, the error names the file.
	w.writeAlpha(t, `"www.alpha.test", `)
	out, err := runCLI(t, "reload", "--socket", w.sock)
	t.Logf("pinhole reload (broken):\n%s", out)
	if err == nil || !strings.Contains(out, "alpha.json") || !strings.Contains(out, "running policy stays") {
		t.Errorf("reload with a broken manifest: err %v, output lacks the file or the outcome", err)
	}
	st, err := w.client().Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.LastReload == nil || st.LastReload.OK || !strings.Contains(st.LastReload.Error, "alpha.json") {
		t.Errorf("status lastReload = %+v, want a failure naming alpha.json", st.LastReload)
	}
	if status, code := curl(t, w.alpha, "http://www.alpha.test/"); code != 0 || status != "200" {
		t.Errorf("after the failed reload alpha -> www.alpha.test: status %q exit %d", status, code)
	}
	text, _ := w.client().Metrics(t.Context())
	if v := metric(text, "pinhole_config_reloads_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf("reload failures metric = %v, want 1", v)
	}
	if v := metric(text, "pinhole_config_last_reload_successful", nil); v != 0 {
		t.Errorf("last reload successful = %v, want 0", v)
	}

	// Good reload: new.alpha.test replaces www.alpha.test.
	w.writeAlpha(t, `"new.alpha.test"`)
	echoes := len(hold.Events())
	out, err = runCLI(t, "reload", "--socket", w.sock)
	t.Logf("pinhole reload:\n%s", out)
	if err != nil || !strings.Contains(out, "changed alpha") {
		t.Fatalf("reload: %v", err)
	}
	if status, code := curl(t, w.alpha, "http://new.alpha.test/"); code != 0 || status != "200" {
		t.Errorf("after reload alpha -> new.alpha.test: status %q exit %d, want 200", status, code)
	}
	if _, code := curl(t, w.alpha, "http://www.alpha.test/"); code != curlNoHost {
		t.Errorf("after reload alpha resolving www.alpha.test: exit %d, want %d", code, curlNoHost)
	}
	if _, code := curl(t, w.alpha, "http://"+w.www.String()+"/"); code != curlConnect {
		t.Errorf("after reload alpha -> the removed host's address: exit %d, want %d (closed)", code, curlConnect)
	}
	// The established connection to the removed host keeps working.
	evs := hold.WaitEvents(t, echoes+10, 10*time.Second)
	for _, e := range evs {
		if e.Kind == "broken" {
			t.Errorf("established connection broke across the reload: %s", e.Detail)
		}
	}

	// SIGHUP reloads as well (and tells systemd RELOADING=1, then READY=1).
	w.writeAlpha(t, `"www.alpha.test", "new.alpha.test"`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	netnstest.WaitFor(t, 10*time.Second, func() bool { return p.notify.count("READY=1") >= 2 })
	if p.notify.count("RELOADING=1") < 1 {
		t.Errorf("no RELOADING=1 before the reload's READY=1")
	}
	if status, code := curl(t, w.alpha, "http://www.alpha.test/"); code != 0 || status != "200" {
		t.Errorf("after SIGHUP alpha -> www.alpha.test: status %q exit %d", status, code)
	}
}

// TestKillRestart: pinholed killed with SIGKILL and started again under a
// continuous probe: nothing outside the policy opens at any moment, and
// what alpha learned is restored into the new table.
func TestKillRestart(t *testing.T) {
	w := newWorld(t)
	p := startPinholed(t, w.cfgPath)
	if status, code := curl(t, w.alpha, "http://www.alpha.test/"); code != 0 || status != "200" {
		t.Fatalf("alpha -> www.alpha.test: status %q exit %d", status, code)
	}
	ap := func(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }
	probes := []*netnstest.Server{
		// beta: alpha's address, its own host on a port it may not use.
		w.beta.StartRole(t, netnstest.Full, "probe", ap(w.www, 80), ap(w.betaHost, 80), ap(w.newHost, 80)),
		// alpha: an address it never looked up.
		w.alpha.StartRole(t, netnstest.Full, "probe", ap(w.newHost, 80), ap(w.betaHost, 443)),
		// unmanaged (root, no app): everything.
		netnstest.StartRole(t, "probe", ap(w.www, 80), ap(w.betaHost, 443), ap(w.dnsAddr, 53)),
	}
	ticks := func() []int {
		var n []int
		for _, s := range probes {
			c := 0
			for _, e := range s.Events() {
				if e.Kind == "tick" {
					c++
				}
			}
			n = append(n, c)
		}
		return n
	}
	waitTicks := func(more int) {
		base := ticks()
		netnstest.WaitFor(t, 30*time.Second, func() bool {
			now := ticks()
			for i := range now {
				if now[i] < base[i]+more {
					return false
				}
			}
			return true
		})
	}
	waitTicks(1)

	p.kill()
	t.Log("pinholed killed")
	waitTicks(2)
	p2 := startPinholed(t, w.cfgPath)
	t.Log("pinholed restarted")
	// By address, without a new lookup: only the restored element opens it.
	if status, code := curl(t, w.alpha, "http://"+w.www.String()+"/"); code != 0 || status != "200" {
		t.Errorf("after restart alpha -> www's address (learned before the kill): status %q exit %d", status, code)
	}
	a, err := w.client().App(t.Context(), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Learned) != 1 || a.Learned[0].Name != "www.alpha.test" {
		t.Errorf("after restart alpha learned %+v, want www.alpha.test", a.Learned)
	}
	waitTicks(2)
	for i, s := range probes {
		for _, e := range s.Events() {
			if e.Kind == "open" {
				t.Errorf("probe %d: %s opened", i, e.Detail)
			}
		}
		t.Logf("probe %d: %d ticks", i, ticks()[i])
	}
	if err := p2.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestCgroupRecreated: systemd recreates a unit's cgroup on each start, with
// a new id; pinholed follows it and the app's processes are recognised
// again.
func TestCgroupRecreated(t *testing.T) {
	w := newWorld(t)
	startPinholed(t, w.cfgPath)
	if status, code := curl(t, w.beta, "http://beta.test:443/"); code != 0 || status != "200" {
		t.Fatalf("beta -> beta.test:443: status %q exit %d", status, code)
	}
	old := w.beta.CgroupID
	if err := cgroup.Remove(w.beta.Cgroup); err != nil {
		t.Fatal(err)
	}
	if err := cgroup.Create(w.beta.Cgroup); err != nil {
		t.Fatal(err)
	}
	id, err := cgroup.ID(w.beta.Cgroup)
	if err != nil || id == old {
		t.Fatalf("recreated cgroup: id %d (was %d), %v", id, old, err)
	}
	// The poll backs inotify up every 10s; 5s is only met through inotify.
	netnstest.WaitFor(t, 5*time.Second, func() bool {
		a, err := w.client().App(t.Context(), "beta")
		return err == nil && a.Identity.CgroupID == id
	})
	dir, err := cgroup.OpenDir(w.beta.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", curlArgs("http://beta.test:443/")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: int(dir.Fd()),
		Credential: &syscall.Credential{Uid: w.beta.UID, Gid: w.beta.GID, Groups: []uint32{}}}
	if status, code := runCurl(t, cmd, "beta (new cgroup)"); code != 0 || status != "200" {
		t.Errorf("after the cgroup was recreated, beta -> beta.test:443: status %q exit %d", status, code)
	}
}
