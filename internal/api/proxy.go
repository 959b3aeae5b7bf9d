package api

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/pinhole-net/pinhole/internal/config"
)

// Proxy authentication types.
const (
	ProxyAnonymous = string(config.ProxyAnonymous)
	ProxyBasic     = string(config.ProxyBasic)
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
		v, err := config.NoProxyEntry(e)
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
	if total > config.MaxNoProxyLen {
		return bad("InvalidNoProxyAddresses", "noProxyAddresses: %d characters written with commas, more than %d", total, config.MaxNoProxyLen)
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
		if err := config.CheckProxyUsername(*r.Username); err != nil {
			return bad("InvalidUsername", "username: %v", err)
		}
		if err := config.CheckProxyCredential(*r.Password); err != nil {
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
	h, err := config.ParseProxyAddress(s)
	if err != nil {
		return "", err
	}
	return h.String(), nil
}
