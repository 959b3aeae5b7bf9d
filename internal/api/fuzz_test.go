package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseAuditQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want AuditQuery
		ok   bool
	}{
		{"", AuditQuery{}, true},
		{"app=weather&limit=20", AuditQuery{App: "weather", Limit: 20}, true},
		{"app=unmanaged&follow=1", AuditQuery{App: "unmanaged", Follow: true}, true},
		{"since=10m", AuditQuery{Since: t0.Add(-10 * time.Minute)}, true},
		{"since=2026-11-30T11:00:00Z&follow=false", AuditQuery{Since: t0.Add(-time.Hour)}, true},
		{"since=-5m", AuditQuery{}, false},
		{"since=yesterday", AuditQuery{}, false},
		{"app=Weather", AuditQuery{}, false},
		{"app=a&app=b", AuditQuery{}, false},
		{"limit=100001", AuditQuery{}, false},
		{"limit=1e3", AuditQuery{}, false},
		{"follow=yes", AuditQuery{}, false},
		{"verbose=1", AuditQuery{}, false},
	}
	for _, tt := range tests {
		v, err := url.ParseQuery(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, perr := ParseAuditQuery(v, t0)
		if (perr == nil) != tt.ok {
			t.Errorf("%q: err = %v, want ok %v", tt.raw, perr, tt.ok)
			continue
		}
		if perr != nil {
			if perr.Status != http.StatusBadRequest || perr.Code != CodeBadQuery {
				t.Errorf("%q: error %d %s, want 400 %s", tt.raw, perr.Status, perr.Code, CodeBadQuery)
			}
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.raw, diff)
		}
	}
}

// FuzzAuditQuery: any query string either fails with a 400 or parses into a
// query that survives a round trip through Values.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{"", "app=weather&since=10m&limit=5&follow=1", "since=2026-11-30T11:00:00.5+02:00", "app=%00", "limit=-1&limit=2", "since=9999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, perr := ParseAuditQuery(v, t0)
		if perr != nil {
			if perr.Status != http.StatusBadRequest || perr.Message == "" {
				t.Fatalf("error %+v", perr)
			}
			return
		}
		again, perr := ParseAuditQuery(q.Values(), t0)
		if perr != nil {
			t.Fatalf("Values of %+v do not parse: %v", q, perr)
		}
		if !again.Since.Equal(q.Since) || again.App != q.App || again.Limit != q.Limit || again.Follow != q.Follow {
			t.Fatalf("round trip %+v -> %+v", q, again)
		}
	})
}

// FuzzProxyBody: a POST /net/proxy body is refused with a 4xx, or gives
// settings that validate again unchanged when sent back as a request.
func FuzzProxyBody(f *testing.F) {
	for _, s := range []string{
		`{"enabled":true,"address":"proxy.example","port":3128,"noProxyAddresses":[".corp.example","10.0.0.0/8"],"authenticationType":"anonymous"}`,
		`{"address":"192.0.2.1","port":8080,"authenticationType":"basic","username":"u","password":"p"}`,
		`{"enabled":false}`,
		`{"port":1e2}`,
		`{"address":"a","address":"b"}`,
		`{"noProxyAddresses":"x"}`,
		`[1]`,
		`{"address":"\u00e9xample.com","port":1,"authenticationType":"anonymous"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ProxyRequest
		if e := decodeJSON(body, &req, proxyRequestKeys, false); e != nil {
			if e.Status/100 != 4 || e.Code == "" {
				t.Fatalf("decode error %+v", e)
			}
			return
		}
		if req.Toggle() {
			return
		}
		s, err := req.Settings()
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Status != 400 {
				t.Fatalf("settings error %v", err)
			}
			return
		}
		port := int(s.Port)
		back := ProxyRequest{Enabled: &s.Enabled, Address: &s.Address, Port: &port, NoProxyAddresses: s.NoProxyAddresses, AuthenticationType: &s.AuthenticationType}
		if s.AuthenticationType == ProxyBasic {
			back.Username, back.Password = &s.Username, &s.Password
		}
		data, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		var req2 ProxyRequest
		if e := decodeJSON(data, &req2, proxyRequestKeys, false); e != nil {
			t.Fatalf("re-encoded %s: %v", data, e)
		}
		s2, err := req2.Settings()
		if err != nil {
			t.Fatalf("settings %+v do not validate again: %v", s, err)
		}
		if diff := cmp.Diff(s, s2); diff != "" {
			t.Fatalf("not stable (-first +second):\n%s", diff)
		}
	})
}

// FuzzReloadBody: a POST /config/reload body is refused with a 4xx or
// decodes into a request.
func FuzzReloadBody(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"dryRun":true}`, `{"dryRun":1}`, `{"dryRun":true}x`, ` {"dryRun" : false } `, `{"DRYRUN":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ReloadRequest
		if e := decodeJSON(body, &req, reloadRequestKeys, true); e != nil {
			if e.Status/100 != 4 || e.Code == "" {
				t.Fatalf("decode error %+v", e)
			}
			return
		}
		if !json.Valid(body) && len(body) > 0 {
			// Only whitespace may be accepted without being JSON.
			for _, c := range body {
				if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
					t.Fatalf("accepted invalid JSON %q", body)
				}
			}
		}
	})
}
