package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/dnsproxy"
	"github.com/pinhole-net/pinhole/internal/firewall"
)

// Backend is what the server serves; internal/daemon implements it.
type Backend interface {
	Status(ctx context.Context) Status
	Rulesets(ctx context.Context) ([]firewall.Ruleset, error)
	// Proxy returns the stored proxy settings; ok is false when there are
	// none.
	Proxy() (s ProxySettings, ok bool)
	SetProxy(s ProxySettings) error
	DeleteProxy() error
	Apps(ctx context.Context) []AppSummary
	// App returns one app (or "system"); ok is false if there is none.
	App(ctx context.Context, name string) (a App, ok bool)
	AuditQuery(f audit.Filter) []audit.Record
	AuditSubscribe(ctx context.Context) (<-chan audit.Record, error)
	DNSStats() dnsproxy.Stats
	// Reload recompiles the config and manifests and applies them. A
	// failure keeps the running policy; the error should be an *Error
	// saying why (an error of another type becomes a 500).
	Reload(ctx context.Context, req ReloadRequest) (ReloadResult, error)
}

// Trust says who may change things through a listener.
type Trust uint8

const (
	// TrustPeer lets root and members of the admin group change things;
	// anyone who can connect may read. For the Unix socket, whose peer
	// credentials the kernel tells.
	TrustPeer Trust = iota
	// TrustAll lets every client change things: the service link, where
	// the cable to the device is the credential, as on Azure Sphere.
	TrustAll
	// TrustReadOnly allows only reads (a metrics-only TCP listener).
	TrustReadOnly
)

// Peer is a client's credentials, as SO_PEERCRED tells them.
type Peer struct {
	Known    bool
	PID      int32
	UID, GID uint32
	// Groups are the supplementary groups, read from /proc when the
	// connection is accepted.
	Groups []uint32
}

func (p Peer) String() string {
	if !p.Known {
		return "unknown"
	}
	return fmt.Sprintf("pid %d uid %d gid %d", p.PID, p.UID, p.GID)
}

// Options configure a Server.
type Options struct {
	Backend Backend
	// Metrics serves GET /metrics; nil answers 404.
	Metrics http.Handler
	// Interfaces lists the network interfaces; nil reads the machine's.
	Interfaces func() ([]Interface, error)
	// AdminGroup is the group, besides root, whose members may change
	// things through a TrustPeer listener; nil for root only.
	AdminGroup *uint32
	// MaxBody is the largest request body (DefaultMaxBody if zero).
	MaxBody int64
	Logger  *slog.Logger
	// Now replaces the clock in tests.
	Now func() time.Time
}

// Server serves the API on any number of listeners.
type Server struct {
	opts    Options
	log     *slog.Logger
	handler http.Handler
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	servers []*http.Server
	closed  bool
}

// New builds a Server; nothing listens until Serve.
func New(opts Options) *Server {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.Interfaces == nil {
		opts.Interfaces = ReadInterfaces
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s
}

// Handler returns the API as an http.Handler. Requests that did not come
// through Serve have no peer and may only read.
func (s *Server) Handler() http.Handler { return s.handler }

type peerKey struct{}
type trustKey struct{}

// Serve answers requests on l until Shutdown. It returns
// http.ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener, trust Trust) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ctx = context.WithValue(ctx, trustKey{}, trust)
			if trust == TrustPeer {
				ctx = context.WithValue(ctx, peerKey{}, peerOf(c))
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	return hs.Serve(l)
}

// Shutdown stops every listener, ends streaming responses and waits for
// requests in progress until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := slices.Clone(s.servers)
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mayChange decides whether a request may change something.
func mayChange(trust Trust, p Peer, admin *uint32) bool {
	switch trust {
	case TrustAll:
		return true
	case TrustReadOnly:
		return false
	}
	if !p.Known {
		return false
	}
	if p.UID == 0 {
		return true
	}
	if admin == nil {
		return false
	}
	return p.GID == *admin || slices.Contains(p.Groups, *admin)
}

// route is one resource: its handler per method.
type route map[string]func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, rt route) { mux.Handle(pattern, s.serveRoute(rt)) }
	handle("/status", route{http.MethodGet: s.getUptime})
	handle("/net/status", route{http.MethodGet: s.getStatus})
	handle("/net/interfaces", route{http.MethodGet: s.getInterfaces})
	handle("/net/interfaces/{name}", route{http.MethodGet: s.getInterface})
	handle("/net/firewall/rulesets", route{http.MethodGet: s.getRulesets})
	handle("/net/proxy", route{http.MethodGet: s.getProxy, http.MethodPost: s.postProxy, http.MethodDelete: s.deleteProxy})
	handle("/apps", route{http.MethodGet: s.getApps})
	handle("/apps/{name}", route{http.MethodGet: s.getApp})
	handle("/audit", route{http.MethodGet: s.getAudit})
	handle("/dns/stats", route{http.MethodGet: s.getDNSStats})
	handle("/config/reload", route{http.MethodPost: s.postReload})
	handle("/metrics", route{http.MethodGet: s.getMetrics})
	mux.Handle("/", s.serveRoute(nil))
	return mux
}

// serveRoute wraps a route with what every response needs: the version
// header, method dispatch, the change check, JSON errors and panic safety.
func (s *Server) serveRoute(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(VersionHeader, Version)
		start := s.opts.Now()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("api handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, Errorf(http.StatusInternalServerError, CodeInternal, "internal error"))
			}
		}()
		err := s.dispatch(w, r, rt)
		lvl := slog.LevelDebug
		if err != nil {
			writeError(w, err)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			lvl = slog.LevelInfo
		}
		peer, _ := r.Context().Value(peerKey{}).(Peer)
		s.log.Log(r.Context(), lvl, "api request", "method", r.Method, "path", r.URL.Path, "peer", peer.String(), "err", errString(err), "took", s.opts.Now().Sub(start))
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, rt route) error {
	if rt == nil {
		return Errorf(http.StatusNotFound, CodeNotFound, "no resource %s", r.URL.Path)
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	h := rt[method]
	if h == nil {
		allow := make([]string, 0, len(rt))
		for m := range rt {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s does not take %s (allowed: %s)", r.URL.Path, r.Method, strings.Join(allow, ", "))
	}
	if method != http.MethodGet {
		trust, ok := r.Context().Value(trustKey{}).(Trust)
		if !ok {
			trust = TrustReadOnly
		}
		peer, _ := r.Context().Value(peerKey{}).(Peer)
		if !mayChange(trust, peer, s.opts.AdminGroup) {
			who := "root"
			if s.opts.AdminGroup != nil && trust == TrustPeer {
				who = fmt.Sprintf("root or members of group %d", *s.opts.AdminGroup)
			}
			if trust == TrustReadOnly {
				return Errorf(http.StatusForbidden, CodeForbidden, "this listener is read-only")
			}
			return Errorf(http.StatusForbidden, CodeForbidden, "%s %s changes pinholed: only %s may (you are %s)", r.Method, r.URL.Path, who, peer)
		}
	}
	if method != http.MethodPost {
		// Only POST takes a body; anything else sent is refused rather
		// than silently ignored.
		if r.ContentLength > 0 {
			return Errorf(http.StatusBadRequest, CodeBadRequest, "%s %s takes no request body", r.Method, r.URL.Path)
		}
	}
	return h(w, r)
}

// writeJSON writes v with status 200.
func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(v)
}

// writeError writes err as the JSON error body. Errors that are not *Error
// become 500s that say what failed.
func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = Errorf(http.StatusInternalServerError, CodeInternal, "%v", err)
	}
	if e.Status == 0 {
		e.Status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Del("Content-Length")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e)
}

func (s *Server) getUptime(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	st := s.opts.Backend.Status(r.Context())
	return writeJSON(w, struct {
		Uptime int64 `json:"uptime"`
	}{st.Uptime})
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	return writeJSON(w, s.opts.Backend.Status(r.Context()))
}

func (s *Server) getInterfaces(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	ifs, err := s.opts.Interfaces()
	if err != nil {
		return Errorf(http.StatusInternalServerError, CodeInternal, "list interfaces: %v", err)
	}
	if ifs == nil {
		ifs = []Interface{}
	}
	return writeJSON(w, Interfaces{Interfaces: ifs})
}

func (s *Server) getInterface(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	name := r.PathValue("name")
	ifs, err := s.opts.Interfaces()
	if err != nil {
		return Errorf(http.StatusInternalServerError, CodeInternal, "list interfaces: %v", err)
	}
	for _, i := range ifs {
		if i.InterfaceName == name {
			return writeJSON(w, i)
		}
	}
	return Errorf(http.StatusNotFound, CodeNotFound, "no interface %q", name)
}

func (s *Server) getRulesets(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	rs, err := s.opts.Backend.Rulesets(r.Context())
	if err != nil {
		return Errorf(http.StatusInternalServerError, CodeInternal, "read firewall: %v", err)
	}
	if rs == nil {
		rs = []firewall.Ruleset{}
	}
	return writeJSON(w, Rulesets{Rulesets: rs})
}

// Rulesets is GET /net/firewall/rulesets.
type Rulesets struct {
	Rulesets []firewall.Ruleset `json:"rulesets"`
}

func (s *Server) getProxy(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	p, ok := s.opts.Backend.Proxy()
	if !ok {
		return writeJSON(w, struct{}{})
	}
	return writeJSON(w, p.Redacted())
}

func (s *Server) postProxy(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	var req ProxyRequest
	if err := decodeBody(r, s.opts.MaxBody, &req, proxyRequestKeys, false); err != nil {
		return err
	}
	settings, err := s.proxyFromRequest(&req)
	if err != nil {
		return err
	}
	if err := s.opts.Backend.SetProxy(settings); err != nil {
		return err
	}
	return writeJSON(w, settings.Redacted())
}

// proxyFromRequest turns a POST /net/proxy body into the settings to store.
func (s *Server) proxyFromRequest(req *ProxyRequest) (ProxySettings, error) {
	if req.Toggle() {
		cur, ok := s.opts.Backend.Proxy()
		if !ok {
			return ProxySettings{}, Errorf(http.StatusNotFound, CodeProxyNotFound, "no proxy is configured to turn on or off")
		}
		cur.Enabled = *req.Enabled
		return cur, nil
	}
	return req.Settings()
}

func (s *Server) deleteProxy(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	if err := s.opts.Backend.DeleteProxy(); err != nil {
		return err
	}
	return writeJSON(w, struct{}{})
}

func (s *Server) getApps(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	apps := s.opts.Backend.Apps(r.Context())
	if apps == nil {
		apps = []AppSummary{}
	}
	return writeJSON(w, Apps{Apps: apps})
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	name := r.PathValue("name")
	a, ok := s.opts.Backend.App(r.Context(), name)
	if !ok {
		return Errorf(http.StatusNotFound, CodeNotFound, "no app %q", name)
	}
	return writeJSON(w, a)
}

// AuditRecords is GET /audit without follow.
type AuditRecords struct {
	Records []audit.Record `json:"records"`
}

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) error {
	q, perr := ParseAuditQuery(r.URL.Query(), s.opts.Now())
	if perr != nil {
		return perr
	}
	f := audit.Filter{App: q.App, Since: q.Since, Limit: q.Limit}
	if !q.Follow {
		recs := s.opts.Backend.AuditQuery(f)
		if recs == nil {
			recs = []audit.Record{}
		}
		return writeJSON(w, AuditRecords{Records: recs})
	}
	return s.followAudit(w, r, f)
}

// followAudit streams JSON lines: the stored records, then new ones and
// later states of aggregated ones, until the client or the server goes.
func (s *Server) followAudit(w http.ResponseWriter, r *http.Request, f audit.Filter) error {
	ctx := r.Context()
	ch, err := s.opts.Backend.AuditSubscribe(ctx)
	if err != nil {
		return Errorf(http.StatusServiceUnavailable, CodeUnavailable, "follow the audit log: %v", err)
	}
	rc := http.NewResponseController(w)
	// The stream outlives the server's read timeout, which would otherwise
	// cancel the request.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	seen := map[uint64]uint64{}
	for _, rec := range s.opts.Backend.AuditQuery(f) {
		seen[rec.ID] = rec.Count
		if err := enc.Encode(rec); err != nil {
			return nil
		}
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case rec, ok := <-ch:
			if !ok {
				return nil
			}
			if f.App != "" && rec.App != f.App {
				continue
			}
			if c, ok := seen[rec.ID]; ok {
				if rec.Count <= c {
					continue
				}
				delete(seen, rec.ID)
			}
			if err := enc.Encode(rec); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
	}
}

func (s *Server) getDNSStats(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	return writeJSON(w, s.opts.Backend.DNSStats())
}

var reloadRequestKeys = []string{"dryRun"}

func (s *Server) postReload(w http.ResponseWriter, r *http.Request) error {
	if err := noQuery(r); err != nil {
		return err
	}
	var req ReloadRequest
	if err := decodeBody(r, s.opts.MaxBody, &req, reloadRequestKeys, true); err != nil {
		return err
	}
	res, err := s.opts.Backend.Reload(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, res)
}

func (s *Server) getMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Metrics == nil {
		return Errorf(http.StatusNotFound, CodeNotFound, "metrics are not enabled")
	}
	s.opts.Metrics.ServeHTTP(w, r)
	return nil
}
