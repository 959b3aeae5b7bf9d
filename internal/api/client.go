package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/dnsproxy"
	"github.com/pinhole-net/pinhole/internal/firewall"
)

// maxResponse bounds a response body the client reads.
const maxResponse = 64 << 20

// Client talks to pinholed's API.
type Client struct {
	base  string
	where string
	hc    *http.Client
}

// NewUnixClient returns a client of the API on the Unix socket at path.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{base: "http://pinholed", where: path, hc: &http.Client{Transport: tr}}
}

// NewTCPClient returns a client of the API at a TCP address, such as the
// device's end of the service link ("192.168.35.2:80").
func NewTCPClient(addr string) *Client {
	tr := &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second, Proxy: nil}
	return &Client{base: "http://" + addr, where: addr, hc: &http.Client{Transport: tr}}
}

// Where names the socket or address the client talks to.
func (c *Client) Where() string { return c.where }

// do sends a request and returns the response of a 2xx answer; any other
// answer becomes an *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if v := resp.Header.Get(VersionHeader); !strings.HasPrefix(v, "pinhole/") {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered without a pinhole REST-API-Version header (got %q): not pinholed", c.where, v)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{}
	if json.Unmarshal(data, e) != nil || e.Message == "" {
		e = &Error{Status: resp.StatusCode, Code: CodeInternal, Message: strings.TrimSpace(string(data))}
	}
	e.Status = resp.StatusCode
	return nil, e
}

// dialError explains the usual reasons pinholed cannot be reached.
func (c *Client) dialError(err error) error {
	hint := ""
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		hint = " (is pinholed running?)"
	case errors.Is(err, os.ErrPermission):
		hint = " (the API socket is for root and the pinhole group)"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach pinholed at %s: %w%s", c.where, err, hint)
}

// get decodes the JSON answer of a GET into v.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, v any) error {
	resp, err := c.do(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if v == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(v); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Status is GET /net/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.call(ctx, http.MethodGet, "/net/status", nil, nil, &s)
	return s, err
}

// Interfaces is GET /net/interfaces.
func (c *Client) Interfaces(ctx context.Context) ([]Interface, error) {
	var v Interfaces
	err := c.call(ctx, http.MethodGet, "/net/interfaces", nil, nil, &v)
	return v.Interfaces, err
}

// Interface is GET /net/interfaces/{name}.
func (c *Client) Interface(ctx context.Context, name string) (Interface, error) {
	var v Interface
	err := c.call(ctx, http.MethodGet, "/net/interfaces/"+url.PathEscape(name), nil, nil, &v)
	return v, err
}

// Rulesets is GET /net/firewall/rulesets.
func (c *Client) Rulesets(ctx context.Context) ([]firewall.Ruleset, error) {
	var v Rulesets
	err := c.call(ctx, http.MethodGet, "/net/firewall/rulesets", nil, nil, &v)
	return v.Rulesets, err
}

// Proxy is GET /net/proxy; nil when no proxy is configured.
func (c *Client) Proxy(ctx context.Context) (*ProxySettings, error) {
	var raw json.RawMessage
	if err := c.call(ctx, http.MethodGet, "/net/proxy", nil, nil, &raw); err != nil {
		return nil, err
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("{}")) {
		return nil, nil
	}
	var p ProxySettings
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("GET /net/proxy: decode answer: %w", err)
	}
	return &p, nil
}

// SetProxy is POST /net/proxy.
func (c *Client) SetProxy(ctx context.Context, req ProxyRequest) (ProxySettings, error) {
	var p ProxySettings
	err := c.call(ctx, http.MethodPost, "/net/proxy", nil, req, &p)
	return p, err
}

// DeleteProxy is DELETE /net/proxy.
func (c *Client) DeleteProxy(ctx context.Context) error {
	return c.call(ctx, http.MethodDelete, "/net/proxy", nil, nil, nil)
}

// Apps is GET /apps.
func (c *Client) Apps(ctx context.Context) ([]AppSummary, error) {
	var v Apps
	err := c.call(ctx, http.MethodGet, "/apps", nil, nil, &v)
	return v.Apps, err
}

// App is GET /apps/{name}.
func (c *Client) App(ctx context.Context, name string) (App, error) {
	var v App
	err := c.call(ctx, http.MethodGet, "/apps/"+url.PathEscape(name), nil, nil, &v)
	return v, err
}

// Audit is GET /audit (q.Follow is ignored; see FollowAudit).
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]audit.Record, error) {
	q.Follow = false
	var v AuditRecords
	err := c.call(ctx, http.MethodGet, "/audit", q.Values(), nil, &v)
	return v.Records, err
}

// FollowAudit is GET /audit?follow=1: it calls fn with each record, stored
// ones first, until ctx ends (then it returns nil), the server ends the
// stream, or fn fails. A record whose ID came before is a later state of it.
func (c *Client) FollowAudit(ctx context.Context, q AuditQuery, fn func(audit.Record) error) error {
	q.Follow = true
	resp, err := c.do(ctx, http.MethodGet, "/audit", q.Values(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return fmt.Errorf("follow audit: decode record: %w", err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("follow audit: %w", err)
	}
	return nil
}

// DNSStats is GET /dns/stats.
func (c *Client) DNSStats(ctx context.Context) (dnsproxy.Stats, error) {
	var v dnsproxy.Stats
	err := c.call(ctx, http.MethodGet, "/dns/stats", nil, nil, &v)
	return v, err
}

// Reload is POST /config/reload.
func (c *Client) Reload(ctx context.Context, req ReloadRequest) (ReloadResult, error) {
	var v ReloadResult
	err := c.call(ctx, http.MethodPost, "/config/reload", nil, req, &v)
	return v, err
}

// Metrics is GET /metrics, in Prometheus' text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	return string(b), err
}
