package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/pinhole-net/pinhole/internal/hostname"
)

// Limits of the proxy settings, as Azure Sphere's networking API has them.
const (
	MaxProxyAddressLen    = 255
	MaxProxyCredentialLen = 63
	MaxNoProxyLen         = 255
)

// Proxy authentication types.
const (
	ProxyAnonymous = "anonymous"
	ProxyBasic     = "basic"
)

// ProxySettings is the upstream HTTP proxy as GET /net/proxy shows it and
// POST /net/proxy stores it. The password is stored but never sent back.
type ProxySettings struct {
	Enabled            bool     `json:"enabled"`
	Address            string   `json:"address"`
	Port               uint16   `json:"port"`
	NoProxyAddresses   []string `json:"noProxyAddresses"`
	AuthenticationType string   `json:"authenticationType"`
	Username           string   `json:"username,omitempty"`
	Password           string   `json:"password,omitempty"`
}

// Redacted returns the settings without the password.
func (p ProxySettings) Redacted() ProxySettings {
	p.Password = ""
	p.NoProxyAddresses = slices.Clone(p.NoProxyAddresses)
	if p.NoProxyAddresses == nil {
		p.NoProxyAddresses = []string{}
	}
	return p
}

// ProxyRequest is the body of POST /net/proxy. A body with only "enabled"
// turns a stored configuration on or off (az sphere device network proxy
// enable/disable); any other body replaces the configuration as a whole.
type ProxyRequest struct {
	Enabled            *bool    `json:"enabled,omitempty"`
	Address            *string  `json:"address,omitempty"`
	Port               *int     `json:"port,omitempty"`
	NoProxyAddresses   []string `json:"noProxyAddresses,omitempty"`
	AuthenticationType *string  `json:"authenticationType,omitempty"`
	Username           *string  `json:"username,omitempty"`
	Password           *string  `json:"password,omitempty"`
}

var proxyRequestKeys = []string{"enabled", "address", "port", "noProxyAddresses", "authenticationType", "username", "password"}

// Toggle reports whether the request only turns the proxy on or off.
func (r *ProxyRequest) Toggle() bool {
	return r.Enabled != nil && r.Address == nil && r.Port == nil && r.NoProxyAddresses == nil &&
		r.AuthenticationType == nil && r.Username == nil && r.Password == nil
}

// Settings validates a full request (not a Toggle) into settings. The error
// is an *Error with Azure Sphere's netconfig error name as its code.
func (r *ProxyRequest) Settings() (ProxySettings, error) {
	bad := func(code, format string, args ...any) (ProxySettings, error) {
		return ProxySettings{}, Errorf(http.StatusBadRequest, code, format, args...)
	}
	var s ProxySettings
	s.Enabled = true // as Networking_Proxy_Create
	if r.Enabled != nil {
		s.Enabled = *r.Enabled
	}
	if r.Address == nil {
		return bad("InvalidProxyAddress", "address: missing")
	}
	addr, err := proxyAddress(*r.Address)
	if err != nil {
		return bad("InvalidProxyAddress", "address: %v", err)
	}
	s.Address = addr
	if r.Port == nil {
		return bad("InvalidProxyPort", "port: missing")
	}
	if *r.Port < 1 || *r.Port > 65535 {
		return bad("InvalidProxyPort", "port: %d is not in 1..65535", *r.Port)
	}
	s.Port = uint16(*r.Port)
	s.NoProxyAddresses = []string{}
	total := 0
	for i, e := range r.NoProxyAddresses {
		v, err := noProxyEntry(e)
		if err != nil {
			return bad("InvalidNoProxyAddresses", "noProxyAddresses[%d]: %v", i, err)
		}
		if slices.Contains(s.NoProxyAddresses, v) {
			return bad("InvalidNoProxyAddresses", "noProxyAddresses[%d]: %s listed twice", i, v)
		}
		if total > 0 {
			total++ // the comma
		}
		total += len(v)
		s.NoProxyAddresses = append(s.NoProxyAddresses, v)
	}
	if total > MaxNoProxyLen {
		return bad("InvalidNoProxyAddresses", "noProxyAddresses: %d characters written with commas, more than %d", total, MaxNoProxyLen)
	}
	if r.AuthenticationType == nil {
		return bad("InvalidProxyClientAuthType", "authenticationType: missing (anonymous or basic)")
	}
	switch *r.AuthenticationType {
	case ProxyAnonymous:
		if r.Username != nil || r.Password != nil {
			return bad("AnonymousAuthDoesNotUseUsernameOrPassword", "anonymous authentication takes no username or password")
		}
	case ProxyBasic:
		if r.Username == nil || r.Password == nil {
			return bad("BasicAuthrequiresUsernameAndPassword", "basic authentication needs a username and a password")
		}
		if err := credential(*r.Username); err != nil {
			return bad("InvalidUsername", "username: %v", err)
		}
		if strings.Contains(*r.Username, ":") {
			return bad("InvalidUsername", "username: a basic-auth user name cannot contain ':'")
		}
		if err := credential(*r.Password); err != nil {
			return bad("InvalidPassword", "password: %v", err)
		}
		s.Username, s.Password = *r.Username, *r.Password
	default:
		return bad("InvalidProxyClientAuthType", "authenticationType: %q is not anonymous or basic", *r.AuthenticationType)
	}
	s.AuthenticationType = *r.AuthenticationType
	return s, nil
}

// proxyAddress checks a proxy's host: an IP address or a host name.
func proxyAddress(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty")
	}
	if len(s) > MaxProxyAddressLen {
		return "", fmt.Errorf("%d characters long, more than %d", len(s), MaxProxyAddressLen)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("%q: an address with a zone", s)
		}
		return a.String(), nil
	}
	n, err := hostname.Normalize(s)
	if err != nil {
		return "", fmt.Errorf("%q is neither an IP address nor a host name: %w", s, err)
	}
	return n, nil
}

// noProxyEntry normalises a no-proxy entry: an address, a prefix, a host
// name, or a domain suffix written ".domain" or "*.domain".
func noProxyEntry(s string) (string, error) {
	if strings.Contains(s, ",") {
		return "", fmt.Errorf("%q: one entry per string, no commas", s)
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.String(), nil
	}
	if pf, err := netip.ParsePrefix(s); err == nil {
		return pf.Masked().String(), nil
	}
	if rest, ok := strings.CutPrefix(s, "."); ok {
		s = "*." + rest
	}
	pat, err := hostname.ParsePattern(s)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if pat.Kind == hostname.Service {
		return "", fmt.Errorf("%q is a DNS-SD service name, not a host", s)
	}
	return pat.String(), nil
}

// credential checks a basic-auth user name or password.
func credential(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty")
	case len(s) > MaxProxyCredentialLen:
		return fmt.Errorf("%d bytes long, more than %d", len(s), MaxProxyCredentialLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("control character at byte %d", i)
		}
	}
	return nil
}
