package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/dnsproxy"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/logprefix"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// fakeBackend is an in-memory Backend.
type fakeBackend struct {
	mu      sync.Mutex
	proxy   *ProxySettings
	records []audit.Record
	subs    chan audit.Record
	reloads []ReloadRequest
	reload  error
}

func (b *fakeBackend) Status(context.Context) Status {
	return Status{NetworkTimeSync: "disabled", Proxy: "disabled", Version: "test", Uptime: 42, Mode: "enforce", Apps: 1}
}

func (b *fakeBackend) Rulesets(context.Context) ([]firewall.Ruleset, error) {
	return []firewall.Ruleset{{Hook: "OUTPUT", IsValid: true, Type: "filter", Chain: "output", Policy: "drop",
		Rules: []firewall.Rule{{Action: "accept", Protocol: "any", Chain: "output", Match: "oif lo", Comment: "loopback", Packets: 3, Bytes: 180}}}}, nil
}

func (b *fakeBackend) Proxy() (ProxySettings, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proxy == nil {
		return ProxySettings{}, false
	}
	return *b.proxy, true
}

func (b *fakeBackend) SetProxy(s ProxySettings) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.proxy = &s
	return nil
}

func (b *fakeBackend) DeleteProxy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.proxy = nil
	return nil
}

func (b *fakeBackend) Apps(context.Context) []AppSummary {
	return []AppSummary{{Name: "weather", Identity: Identity{Kind: "uid", UID: ptr(uint32(1001))}, DNSPort: 5300, Hosts: 2}}
}

func (b *fakeBackend) App(_ context.Context, name string) (App, bool) {
	if name != "weather" {
		return App{}, false
	}
	return App{AppSummary: b.Apps(nil)[0], Rules: []Rule{{Host: "api.weather.example", Source: "m.json"}}}, true
}

func (b *fakeBackend) AuditQuery(f audit.Filter) []audit.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []audit.Record
	for _, r := range b.records {
		if f.App == "" || r.App == f.App {
			out = append(out, r)
		}
	}
	return out
}

func (b *fakeBackend) AuditSubscribe(ctx context.Context) (<-chan audit.Record, error) {
	if b.subs == nil {
		return nil, errors.New("no audit")
	}
	return b.subs, nil
}

func (b *fakeBackend) DNSStats() dnsproxy.Stats {
	return dnsproxy.Stats{Apps: []dnsproxy.AppStats{{App: "weather", Port: 5300, Queries: map[string]uint64{"allowed": 7}}}}
}

func (b *fakeBackend) Reload(_ context.Context, req ReloadRequest) (ReloadResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reloads = append(b.reloads, req)
	if b.reload != nil {
		return ReloadResult{}, b.reload
	}
	return ReloadResult{DryRun: req.DryRun, Apps: 1}, nil
}

func ptr[T any](v T) *T { return &v }

func record(id uint64, app string, count uint64) audit.Record {
	return audit.Record{ID: id, First: t0, Last: t0, Count: count, App: app, Verdict: logprefix.Deny, Direction: logprefix.Out,
		Proto: audit.ProtoTCP, Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("198.18.1.10"), DstPort: 443}
}

// newTestServer serves a fake backend on a Unix socket (the test runs as
// root or not; reads work either way) and returns a client of it.
func newTestServer(t *testing.T, b *fakeBackend, trust Trust) (*Server, *Client) {
	t.Helper()
	s := New(Options{
		Backend: b,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pinhole_up 1\n") }),
		Interfaces: func() ([]Interface, error) {
			return []Interface{{InterfaceName: "eth0", InterfaceUp: true, IPAddresses: []string{"10.0.0.2"}}}, nil
		},
		Now:     func() time.Time { return t0 },
		MaxBody: 1024,
	})
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := ListenUnix(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l, trust) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return s, NewUnixClient(path)
}

// raw sends a request to h and returns status, headers and decoded error.
func raw(t *testing.T, h http.Handler, method, target, contentType, body string, trust Trust) (*http.Response, *Error) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req = req.WithContext(context.WithValue(req.Context(), trustKey{}, trust))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	var e Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("%s %s: status %d with a body that is not a JSON error: %v", method, target, resp.StatusCode, err)
	}
	return resp, &e
}

func TestErrorsAndHeaders(t *testing.T) {
	t.Parallel()
	s := New(Options{Backend: &fakeBackend{}, MaxBody: 256, Now: func() time.Time { return t0 },
		Interfaces: func() ([]Interface, error) { return nil, nil }})
	h := s.Handler()
	long := `{"address": "` + strings.Repeat("a", 300) + `"}`
	tests := []struct {
		name, method, target, ctype, body string
		trust                             Trust
		status                            int
		code                              string
	}{
		{"unknown path", "GET", "/nope", "", "", TrustAll, 404, CodeNotFound},
		{"unknown app", "GET", "/apps/rain", "", "", TrustAll, 404, CodeNotFound},
		{"unknown interface", "GET", "/net/interfaces/wlan9", "", "", TrustAll, 404, CodeNotFound},
		{"wrong method", "PUT", "/net/proxy", "", "", TrustAll, 405, CodeMethodNotAllowed},
		{"wrong method on a read-only resource", "POST", "/apps", "", "", TrustAll, 405, CodeMethodNotAllowed},
		{"GET reload", "GET", "/config/reload", "", "", TrustAll, 405, CodeMethodNotAllowed},
		{"oversize body", "POST", "/net/proxy", "application/json", long, TrustAll, 413, CodeTooLarge},
		{"unknown field", "POST", "/net/proxy", "application/json", `{"adress": "p.example"}`, TrustAll, 400, CodeUnknownField},
		{"field in the wrong case", "POST", "/net/proxy", "", `{"Address": "p.example", "port": 3128, "authenticationType": "anonymous"}`, TrustAll, 400, CodeUnknownField},
		{"field twice", "POST", "/net/proxy", "", `{"port": 1, "port": 2}`, TrustAll, 400, CodeBadRequest},
		{"data after the object", "POST", "/config/reload", "", `{} {}`, TrustAll, 400, CodeBadRequest},
		{"array body", "POST", "/config/reload", "", `[]`, TrustAll, 400, CodeBadRequest},
		{"reload unknown field", "POST", "/config/reload", "", `{"dryrun": true}`, TrustAll, 400, CodeUnknownField},
		{"reload wrong type", "POST", "/config/reload", "", `{"dryRun": "yes"}`, TrustAll, 400, CodeBadRequest},
		{"wrong content type", "POST", "/config/reload", "text/plain", `{}`, TrustAll, 415, CodeUnsupportedType},
		{"empty proxy body", "POST", "/net/proxy", "", ``, TrustAll, 400, CodeBadRequest},
		{"read-only listener", "POST", "/config/reload", "", `{}`, TrustReadOnly, 403, CodeForbidden},
		{"unknown peer", "DELETE", "/net/proxy", "", ``, TrustPeer, 403, CodeForbidden},
		{"body on GET", "GET", "/apps", "", `{}`, TrustAll, 400, CodeBadRequest},
		{"query on a resource without one", "GET", "/apps?x=1", "", ``, TrustAll, 400, CodeBadQuery},
		{"bad audit query", "GET", "/audit?limit=0", "", ``, TrustAll, 400, CodeBadQuery},
		{"toggle without a proxy", "POST", "/net/proxy", "", `{"enabled": true}`, TrustAll, 404, CodeProxyNotFound},
		{"proxy port 0", "POST", "/net/proxy", "", `{"address": "p.example", "port": 0, "authenticationType": "anonymous"}`, TrustAll, 400, "InvalidProxyPort"},
		{"metrics off", "GET", "/metrics", "", ``, TrustAll, 404, CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, e := raw(t, h, tt.method, tt.target, tt.ctype, tt.body, tt.trust)
			if got := resp.Header.Get(VersionHeader); got != Version {
				t.Errorf("%s = %q, want %q", VersionHeader, got, Version)
			}
			if e == nil {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			t.Logf("error: %s", e.Message)
			if resp.StatusCode != tt.status || e.Status != tt.status || e.Code != tt.code {
				t.Errorf("got status %d (body %d) code %q, want %d %q", resp.StatusCode, e.Status, e.Code, tt.status, tt.code)
			}
			if resp.StatusCode == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
}

func TestMayChange(t *testing.T) {
	t.Parallel()
	admin := uint32(990)
	tests := []struct {
		name  string
		trust Trust
		peer  Peer
		admin *uint32
		want  bool
	}{
		{"root", TrustPeer, Peer{Known: true}, nil, true},
		{"user without group", TrustPeer, Peer{Known: true, UID: 1000, GID: 1000}, nil, false},
		{"user, primary group admin", TrustPeer, Peer{Known: true, UID: 1000, GID: 990}, &admin, true},
		{"user, supplementary group admin", TrustPeer, Peer{Known: true, UID: 1000, GID: 1000, Groups: []uint32{27, 990}}, &admin, true},
		{"user, other groups", TrustPeer, Peer{Known: true, UID: 1000, GID: 1000, Groups: []uint32{27}}, &admin, false},
		{"unknown peer", TrustPeer, Peer{}, &admin, false},
		{"service link", TrustAll, Peer{}, nil, true},
		{"read-only root", TrustReadOnly, Peer{Known: true}, nil, false},
	}
	for _, tt := range tests {
		if got := mayChange(tt.trust, tt.peer, tt.admin); got != tt.want {
			t.Errorf("%s: mayChange = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseGroups(t *testing.T) {
	t.Parallel()
	status := "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 990 \nNStgid:\t1\n"
	if diff := cmp.Diff([]uint32{4, 27, 990}, parseGroups([]byte(status))); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if got := parseGroups([]byte("Groups:\t\n")); len(got) != 0 {
		t.Errorf("no groups: got %v", got)
	}
}

func TestClientReads(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	_, c := newTestServer(t, b, TrustAll)
	ctx := t.Context()
	st, err := c.Status(ctx)
	if err != nil || st.Uptime != 42 || st.NetworkTimeSync != "disabled" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	ifs, err := c.Interfaces(ctx)
	if err != nil || len(ifs) != 1 || ifs[0].InterfaceName != "eth0" {
		t.Fatalf("Interfaces = %+v, %v", ifs, err)
	}
	if _, err := c.Interface(ctx, "eth0"); err != nil {
		t.Errorf("Interface(eth0): %v", err)
	}
	if _, err := c.Interface(ctx, "wlan0"); !IsNotFound(err) {
		t.Errorf("Interface(wlan0) = %v, want a 404", err)
	}
	rs, err := c.Rulesets(ctx)
	if err != nil || len(rs) != 1 || rs[0].Rules[0].Packets != 3 {
		t.Fatalf("Rulesets = %+v, %v", rs, err)
	}
	apps, err := c.Apps(ctx)
	if err != nil || len(apps) != 1 || *apps[0].Identity.UID != 1001 {
		t.Fatalf("Apps = %+v, %v", apps, err)
	}
	app, err := c.App(ctx, "weather")
	if err != nil || app.Rules[0].Host != "api.weather.example" {
		t.Fatalf("App = %+v, %v", app, err)
	}
	var e *Error
	if _, err := c.App(ctx, "rain"); !errors.As(err, &e) || e.Status != 404 || e.Code != CodeNotFound {
		t.Errorf("App(rain) = %v, want a 404 not_found", err)
	}
	ds, err := c.DNSStats(ctx)
	if err != nil || ds.Apps[0].Queries["allowed"] != 7 {
		t.Fatalf("DNSStats = %+v, %v", ds, err)
	}
	m, err := c.Metrics(ctx)
	if err != nil || m != "pinhole_up 1\n" {
		t.Fatalf("Metrics = %q, %v", m, err)
	}
}

func TestClientProxy(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	_, c := newTestServer(t, b, TrustAll)
	ctx := t.Context()
	if p, err := c.Proxy(ctx); err != nil || p != nil {
		t.Fatalf("Proxy with none = %+v, %v", p, err)
	}
	req := ProxyRequest{Address: ptr("Proxy.Contoso.Example"), Port: ptr(3128), AuthenticationType: ptr("basic"),
		Username: ptr("dev"), Password: ptr("s3cret"), NoProxyAddresses: []string{".contoso.example", "10.1.2.0/24"}}
	got, err := c.SetProxy(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := ProxySettings{Enabled: true, Address: "proxy.contoso.example", Port: 3128, AuthenticationType: "basic",
		Username: "dev", NoProxyAddresses: []string{"*.contoso.example", "10.1.2.0/24"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("POST answer (-want +got):\n%s", diff)
	}
	if b.proxy.Password != "s3cret" {
		t.Errorf("stored password %q, want s3cret", b.proxy.Password)
	}
	p, err := c.Proxy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want, p); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}
	if _, err := c.SetProxy(ctx, ProxyRequest{Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.Proxy(ctx); p == nil || p.Enabled || p.Address != "proxy.contoso.example" {
		t.Errorf("after disable: %+v, want the same settings, disabled", p)
	}
	if b.proxy.Password != "s3cret" {
		t.Errorf("disable lost the password")
	}
	if err := c.DeleteProxy(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Proxy(ctx); err != nil || p != nil {
		t.Errorf("after DELETE: %+v, %v", p, err)
	}
	if err := c.DeleteProxy(ctx); err != nil {
		t.Errorf("DELETE with none: %v", err)
	}
}

func TestProxyValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		req  ProxyRequest
		code string
	}{
		{"no address", ProxyRequest{Port: ptr(1), AuthenticationType: ptr("anonymous")}, "InvalidProxyAddress"},
		{"url address", ProxyRequest{Address: ptr("http://p.example"), Port: ptr(1), AuthenticationType: ptr("anonymous")}, "InvalidProxyAddress"},
		{"long address", ProxyRequest{Address: ptr(strings.Repeat("a.", 128) + "b"), Port: ptr(1), AuthenticationType: ptr("anonymous")}, "InvalidProxyAddress"},
		{"port too high", ProxyRequest{Address: ptr("p.example"), Port: ptr(65536), AuthenticationType: ptr("anonymous")}, "InvalidProxyPort"},
		{"no auth type", ProxyRequest{Address: ptr("p.example"), Port: ptr(1)}, "InvalidProxyClientAuthType"},
		{"digest", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("digest")}, "InvalidProxyClientAuthType"},
		{"anonymous with user", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("anonymous"), Username: ptr("u")}, "AnonymousAuthDoesNotUseUsernameOrPassword"},
		{"basic without password", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("basic"), Username: ptr("u")}, "BasicAuthrequiresUsernameAndPassword"},
		{"long user", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("basic"), Username: ptr(long), Password: ptr("p")}, "InvalidUsername"},
		{"user with colon", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("basic"), Username: ptr("a:b"), Password: ptr("p")}, "InvalidUsername"},
		{"empty password", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("basic"), Username: ptr("u"), Password: ptr("")}, "InvalidPassword"},
		{"no-proxy with comma", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("anonymous"), NoProxyAddresses: []string{"a.example,b.example"}}, "InvalidNoProxyAddresses"},
		{"no-proxy too long", ProxyRequest{Address: ptr("p.example"), Port: ptr(1), AuthenticationType: ptr("anonymous"),
			NoProxyAddresses: []string{strings.Repeat("a", 60) + ".example", strings.Repeat("b", 60) + ".example", strings.Repeat("c", 60) + ".example", strings.Repeat("d", 60) + ".example"}}, "InvalidNoProxyAddresses"},
	}
	for _, tt := range tests {
		_, err := tt.req.Settings()
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code || e.Status != 400 {
			t.Errorf("%s: err = %v, want code %s", tt.name, err, tt.code)
		}
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	_, c := newTestServer(t, b, TrustAll)
	ctx := t.Context()
	if _, err := c.Reload(ctx, ReloadRequest{}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Reload(ctx, ReloadRequest{DryRun: true})
	if err != nil || !res.DryRun {
		t.Fatalf("dry run = %+v, %v", res, err)
	}
	b.mu.Lock()
	b.reload = &Error{Status: 422, Code: CodeReloadFailed, Message: "manifest broken", Details: []string{"a.json:3:4: bad"}}
	b.mu.Unlock()
	_, err = c.Reload(ctx, ReloadRequest{})
	var e *Error
	if !errors.As(err, &e) || e.Status != 422 || e.Code != CodeReloadFailed || len(e.Details) != 1 {
		t.Fatalf("failed reload = %v", err)
	}
	if !strings.Contains(err.Error(), "a.json:3:4: bad") {
		t.Errorf("error text %q lacks the detail", err)
	}
	if diff := cmp.Diff([]ReloadRequest{{}, {DryRun: true}, {}}, b.reloads); diff != "" {
		t.Errorf("reloads (-want +got):\n%s", diff)
	}
}

func TestPeerCredentials(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{}
	_, c := newTestServer(t, b, TrustPeer)
	err := c.DeleteProxy(t.Context())
	if os.Geteuid() == 0 {
		if err != nil {
			t.Errorf("root DELETE: %v", err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != 403 {
		t.Errorf("non-root DELETE = %v, want 403", err)
	}
}

func TestAuditFollow(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{records: []audit.Record{record(1, "a", 1), record(2, "b", 1)}, subs: make(chan audit.Record, 8)}
	_, c := newTestServer(t, b, TrustAll)
	recs, err := c.Audit(t.Context(), AuditQuery{App: "b"})
	if err != nil || len(recs) != 1 || recs[0].ID != 2 {
		t.Fatalf("Audit(app=b) = %+v, %v", recs, err)
	}
	// Streamed: a repeat of record 2 already seen (dropped), a later state
	// of it, another app's record (filtered), a new one.
	b.subs <- record(2, "b", 1)
	b.subs <- record(2, "b", 5)
	b.subs <- record(3, "a", 1)
	b.subs <- record(4, "b", 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var got []uint64
	err = c.FollowAudit(ctx, AuditQuery{App: "b"}, func(r audit.Record) error {
		got = append(got, r.ID*100+r.Count)
		if len(got) == 3 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{201, 205, 401}, got); diff != "" {
		t.Errorf("followed records id*100+count (-want +got):\n%s", diff)
	}
}

func TestFollowEndsOnShutdown(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{records: []audit.Record{record(9, "a", 1)}, subs: make(chan audit.Record)}
	s, c := newTestServer(t, b, TrustAll)
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		var once sync.Once
		done <- c.FollowAudit(context.Background(), AuditQuery{}, func(audit.Record) error {
			once.Do(func() { close(started) })
			return nil
		})
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a follower: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("FollowAudit after shutdown: %v", err)
	}
}

func TestListenUnix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "api.sock")
	l, err := ListenUnix(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	if _, err := ListenUnix(path, nil); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second listener: %v, want an error naming the running one", err)
	}
	// A stale socket (its listener gone without unlinking) is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := ListenUnix(path, nil)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l2.Close()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path, nil); err == nil {
		t.Error("listened over a regular file")
	}
}
