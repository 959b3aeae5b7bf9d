package config

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary files: it must never panic, and what it
// accepts must be valid and accepted again.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(examplePath); err == nil {
		f.Add(b)
	}
	f.Add([]byte("apps:\n  - {name: a, manifest: m, uid: 5}\n"))
	f.Add([]byte("dns:\n  upstreams: ['[2001:db8::1]:53']\n  ttl_floor: 1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("/etc/pinhole/fuzz.yaml", data)
		if err != nil {
			ce, ok := err.(*Error)
			if !ok || len(ce.Problems) == 0 {
				t.Fatalf("error %v (%T) is not an *Error with problems", err, err)
			}
			for _, p := range ce.Problems {
				if p.Msg == "" || p.Line < 0 {
					t.Fatalf("bad problem %+v", p)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		if c.DNS.TTLFloor > c.DNS.TTLCeiling || c.DNS.MaxAddressesPerName > c.DNS.MaxAddressesPerApp {
			t.Fatalf("invalid DNS limits accepted: %+v", c.DNS)
		}
		if len(c.Time.Servers) > MaxTimeServers || c.SystemMark == 0 {
			t.Fatalf("invalid values accepted: %+v", c)
		}
		if (len(c.DNS.Upstreams) == 0) == (c.DNS.ResolvConf == "") {
			t.Fatalf("upstreams %v and resolv_conf %q", c.DNS.Upstreams, c.DNS.ResolvConf)
		}
		seen := map[string]bool{}
		for _, a := range c.Apps {
			if a.Name == "" || seen[a.Name] || a.Identity.Kind == 0 || a.Manifest == "" {
				t.Fatalf("invalid app accepted: %+v", a)
			}
			if a.Identity.Kind == IdentityCgroup && (a.Identity.Cgroup == "" || strings.HasPrefix(a.Identity.Cgroup, "/") || strings.HasSuffix(a.Identity.Cgroup, "/")) {
				t.Fatalf("unnormalised cgroup accepted: %q", a.Identity.Cgroup)
			}
			seen[a.Name] = true
		}
		if _, err := c.Profile.Load(); err != nil {
			t.Fatalf("accepted profile does not load: %v", err)
		}
	})
}

// FuzzResolvConf feeds the resolv.conf parser arbitrary files.
func FuzzResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 192.0.2.1\nnameserver fe80::1%eth0 # x\n"))
	f.Add([]byte("search a\noptions ndots:2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseResolvConf(bytes.NewReader(data))
		if err != nil {
			if len(got) != 0 {
				t.Fatal("servers with an error")
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("no servers and no error")
		}
		for _, ap := range got {
			if ap.Port() != 53 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Addr().Is4In6() {
				t.Fatalf("bad server %v", ap)
			}
		}
	})
}
