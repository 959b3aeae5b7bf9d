// Package catalog is the endpoint catalog: per profile, the hosts, ports and
// protocols a device's own software must reach. The data is embedded from
// catalog.yaml so that it stays a table, not code.
package catalog

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pinhole-net/pinhole/internal/hostname"
	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var catalogYAML []byte

// Transport is the layer-4 protocol of an endpoint.
type Transport string

const (
	TCP Transport = "tcp"
	UDP Transport = "udp"
)

// Kind tells where an endpoint's destinations come from.
type Kind string

const (
	// KindHosts endpoints list their host names (and, from parameters,
	// addresses).
	KindHosts Kind = "hosts"
	// KindDNSServers endpoints are whatever DNS servers the device is
	// configured with; they list no hosts.
	KindDNSServers Kind = "dns-servers"
)

// FeatureTime marks the endpoints of time synchronisation, which can be
// turned off.
const FeatureTime = "time"

// Endpoint is one row of the catalog: one protocol and port to some hosts.
type Endpoint struct {
	// Protocol is the label the source uses, such as "MQTT over TCP".
	Protocol  string    `json:"protocol"`
	Transport Transport `json:"transport"`
	Port      uint16    `json:"port"`
	// PortNote qualifies the port as the source does ("WebSocket").
	PortNote string `json:"port_note,omitempty"`
	Kind     Kind   `json:"kind"`
	// Hosts are normalised host names; Addrs are address literals that a
	// parameter gave (an NTP server written as an IP address).
	Hosts   []string     `json:"hosts,omitempty"`
	Addrs   []netip.Addr `json:"addrs,omitempty"`
	Purpose string       `json:"purpose"`
	// Optional endpoints belong to a feature that can be turned off.
	Optional bool `json:"optional,omitempty"`
	// Feature names that feature, such as FeatureTime.
	Feature string `json:"feature,omitempty"`
}

// Destinations returns the hosts and address literals as text, in order.
func (e Endpoint) Destinations() []string {
	out := slices.Clone(e.Hosts)
	for _, a := range e.Addrs {
		out = append(out, a.String())
	}
	return out
}

// Param describes a value a profile takes from the user.
type Param struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Default     string `json:"default,omitempty"`
	Required    bool   `json:"required,omitempty"`
}

// Profile is a loaded profile with its parameters applied.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Source says where the list comes from.
	Source string `json:"source"`
	// Params holds every parameter's effective value, defaults included.
	Params map[string]string `json:"params,omitempty"`
	// NTPServers are the profile's default time servers (host names or
	// address literals), in order of preference.
	NTPServers []string `json:"ntp_servers,omitempty"`
	// ConnectivityURL is what the internet connection check fetches; empty
	// if the profile has none.
	ConnectivityURL string     `json:"connectivity_url,omitempty"`
	Endpoints       []Endpoint `json:"endpoints"`
}

// ErrUnknownProfile is returned (wrapped) for a profile name not in the
// catalog.
var ErrUnknownProfile = errors.New("unknown profile")

// ParamError reports a bad or missing parameter value.
type ParamError struct {
	Profile string
	Param   string
	Err     error
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("profile %s: parameter %s: %v", e.Profile, e.Param, e.Err)
}

func (e *ParamError) Unwrap() error { return e.Err }

// The raw shape of catalog.yaml.
type fileData struct {
	Profiles []profileData `yaml:"profiles"`
}

type profileData struct {
	Name            string         `yaml:"name"`
	Description     string         `yaml:"description"`
	Source          string         `yaml:"source"`
	Params          []paramData    `yaml:"params"`
	NTPServers      []string       `yaml:"ntp_servers"`
	ConnectivityURL string         `yaml:"connectivity_url"`
	Endpoints       []endpointData `yaml:"endpoints"`
}

type paramData struct {
	Name        string `yaml:"name"`
	Kind        string `yaml:"kind"` // hub, hosts or url
	Domain      string `yaml:"domain"`
	Default     string `yaml:"default"`
	Required    bool   `yaml:"required"`
	Description string `yaml:"description"`
}

type endpointData struct {
	Protocol  string   `yaml:"protocol"`
	Transport string   `yaml:"transport"`
	Port      int      `yaml:"port"`
	PortNote  string   `yaml:"port_note"`
	Kind      string   `yaml:"kind"`
	Hosts     []string `yaml:"hosts"`
	URL       string   `yaml:"url"`
	Purpose   string   `yaml:"purpose"`
	Optional  bool     `yaml:"optional"`
	Feature   string   `yaml:"feature"`
}

// Parameter kinds.
const (
	paramHub   = "hub"
	paramHosts = "hosts"
	paramURL   = "url"
)

// data parses the embedded catalog once.
var data = sync.OnceValues(func() (*fileData, error) { return parseData(catalogYAML) })

func parseData(b []byte) (*fileData, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f fileData
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("embedded catalog: %w", err)
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("embedded catalog: %w", err)
	}
	return &f, nil
}

// validate checks the static parts of the data; parameterised values are
// checked when a profile is loaded.
func (f *fileData) validate() error {
	seen := map[string]bool{}
	for _, p := range f.Profiles {
		if p.Name == "" || seen[p.Name] {
			return fmt.Errorf("profile %q: empty or duplicate name", p.Name)
		}
		seen[p.Name] = true
		params := map[string]paramData{}
		for _, pd := range p.Params {
			switch pd.Kind {
			case paramHub, paramHosts, paramURL:
			default:
				return fmt.Errorf("profile %s: parameter %q: unknown kind %q", p.Name, pd.Name, pd.Kind)
			}
			if _, dup := params[pd.Name]; dup || pd.Name == "" {
				return fmt.Errorf("profile %s: parameter %q: empty or duplicate name", p.Name, pd.Name)
			}
			if pd.Required && pd.Default != "" {
				return fmt.Errorf("profile %s: parameter %s: required with a default", p.Name, pd.Name)
			}
			params[pd.Name] = pd
		}
		for i, e := range p.Endpoints {
			if err := e.validate(params); err != nil {
				return fmt.Errorf("profile %s: endpoint %d: %w", p.Name, i, err)
			}
		}
		for _, s := range p.NTPServers {
			if err := checkRef(s, params, paramHosts); err != nil {
				return fmt.Errorf("profile %s: ntp_servers: %w", p.Name, err)
			}
		}
		if p.ConnectivityURL != "" {
			if err := checkRef(p.ConnectivityURL, params, paramURL); err != nil {
				return fmt.Errorf("profile %s: connectivity_url: %w", p.Name, err)
			}
		}
	}
	return nil
}

func (e endpointData) validate(params map[string]paramData) error {
	if e.Purpose == "" {
		return errors.New("no purpose")
	}
	if e.URL != "" {
		if _, ok := paramRef(e.URL); !ok {
			return fmt.Errorf("url %q must name a url parameter", e.URL)
		}
		if err := checkRef(e.URL, params, paramURL); err != nil {
			return err
		}
		if e.Protocol != "" || e.Transport != "" || e.Port != 0 || len(e.Hosts) != 0 || e.Kind != "" {
			return errors.New("a url endpoint takes its protocol, port and host from the url")
		}
		return nil
	}
	if e.Protocol == "" {
		return errors.New("no protocol")
	}
	if Transport(e.Transport) != TCP && Transport(e.Transport) != UDP {
		return fmt.Errorf("transport %q is not tcp or udp", e.Transport)
	}
	if e.Port < 1 || e.Port > 65535 {
		return fmt.Errorf("port %d outside 1..65535", e.Port)
	}
	switch Kind(e.Kind) {
	case "", KindHosts:
		if len(e.Hosts) == 0 {
			return errors.New("no hosts")
		}
	case KindDNSServers:
		if len(e.Hosts) != 0 {
			return errors.New("a dns-servers endpoint lists no hosts")
		}
	default:
		return fmt.Errorf("unknown kind %q", e.Kind)
	}
	if e.Optional != (e.Feature != "") {
		return errors.New("optional endpoints, and only they, name their feature")
	}
	for _, h := range e.Hosts {
		if err := checkRef(h, params, paramHub, paramHosts); err != nil {
			return err
		}
	}
	return nil
}

// checkRef accepts a "{param}" of one of the kinds, or a literal: a host
// name, or a URL where a url kind is expected.
func checkRef(s string, params map[string]paramData, kinds ...string) error {
	if ref, ok := paramRef(s); ok {
		p, ok := params[ref]
		if !ok || !slices.Contains(kinds, p.Kind) {
			return fmt.Errorf("%q does not name a parameter of kind %s", s, strings.Join(kinds, " or "))
		}
		if !p.Required && p.Default == "" {
			return fmt.Errorf("%q names a parameter that may have no value", s)
		}
		return nil
	}
	if slices.Contains(kinds, paramURL) {
		_, _, _, err := parseURL(s)
		return err
	}
	p, err := hostname.ParsePattern(s)
	if err != nil {
		return fmt.Errorf("host %q: %w", s, err)
	}
	if p.Kind != hostname.Exact || p.Name != s {
		return fmt.Errorf("host %q must be a plain host name in normal form", s)
	}
	return nil
}

// paramRef returns NAME for "{NAME}".
func paramRef(s string) (string, bool) {
	if len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' {
		return s[1 : len(s)-1], true
	}
	return "", false
}

// Names lists the profiles in catalog order.
func Names() []string {
	f, err := data()
	if err != nil {
		return nil
	}
	names := make([]string, len(f.Profiles))
	for i, p := range f.Profiles {
		names[i] = p.Name
	}
	return names
}

func lookup(name string) (*profileData, error) {
	f, err := data()
	if err != nil {
		return nil, err
	}
	for i := range f.Profiles {
		if f.Profiles[i].Name == name {
			return &f.Profiles[i], nil
		}
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownProfile, name, strings.Join(Names(), ", "))
}

// Params describes the parameters a profile takes.
func Params(profile string) ([]Param, error) {
	pd, err := lookup(profile)
	if err != nil {
		return nil, err
	}
	out := make([]Param, len(pd.Params))
	for i, p := range pd.Params {
		out[i] = Param{Name: p.Name, Description: p.Description, Default: p.Default, Required: p.Required}
	}
	return out, nil
}

// Load returns a profile with its parameters applied. An empty value counts
// as not given. Unknown parameters and bad values give a *ParamError.
func Load(name string, params map[string]string) (*Profile, error) {
	pd, err := lookup(name)
	if err != nil {
		return nil, err
	}
	prof := &Profile{
		Name:        pd.Name,
		Description: pd.Description,
		Source:      pd.Source,
	}
	// Unknown parameters first, in a stable order.
	var given []string
	for k := range params {
		given = append(given, k)
	}
	slices.Sort(given)
	for _, k := range given {
		if !slices.ContainsFunc(pd.Params, func(p paramData) bool { return p.Name == k }) {
			return nil, &ParamError{Profile: name, Param: k, Err: unknownParam(pd)}
		}
	}
	vals := map[string]paramValue{}
	for _, p := range pd.Params {
		raw := params[p.Name]
		if raw == "" {
			raw = p.Default
		}
		if raw == "" {
			if p.Required {
				return nil, &ParamError{Profile: name, Param: p.Name, Err: errors.New("required: " + p.Description)}
			}
			continue
		}
		v, err := parseParam(p, raw)
		if err != nil {
			return nil, &ParamError{Profile: name, Param: p.Name, Err: err}
		}
		vals[p.Name] = v
		if prof.Params == nil {
			prof.Params = map[string]string{}
		}
		prof.Params[p.Name] = v.text
	}
	for _, s := range pd.NTPServers {
		if ref, ok := paramRef(s); ok {
			v := vals[ref]
			prof.NTPServers = append(prof.NTPServers, v.hosts...)
			for _, a := range v.addrs {
				prof.NTPServers = append(prof.NTPServers, a.String())
			}
			continue
		}
		prof.NTPServers = append(prof.NTPServers, s)
	}
	prof.ConnectivityURL = pd.ConnectivityURL
	if ref, ok := paramRef(pd.ConnectivityURL); ok {
		prof.ConnectivityURL = vals[ref].text
	}
	for _, ed := range pd.Endpoints {
		prof.Endpoints = append(prof.Endpoints, ed.expand(vals))
	}
	return prof, nil
}

func unknownParam(pd *profileData) error {
	if len(pd.Params) == 0 {
		return fmt.Errorf("profile %s takes no parameters", pd.Name)
	}
	names := make([]string, len(pd.Params))
	for i, p := range pd.Params {
		names[i] = p.Name
	}
	return fmt.Errorf("not a parameter of profile %s, which takes %s", pd.Name, strings.Join(names, ", "))
}

// paramValue is a parsed parameter.
type paramValue struct {
	text  string // normalised text, as Profile.Params shows it
	hosts []string
	addrs []netip.Addr
	// For url parameters.
	scheme string
	port   uint16
}

func parseParam(p paramData, raw string) (paramValue, error) {
	switch p.Kind {
	case paramHub:
		host, err := hubHost(raw, p.Domain)
		if err != nil {
			return paramValue{}, err
		}
		return paramValue{text: host, hosts: []string{host}}, nil
	case paramHosts:
		var v paramValue
		var texts []string
		for s := range strings.SplitSeq(raw, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				return paramValue{}, fmt.Errorf("%q: empty entry in the list", raw)
			}
			if a, err := netip.ParseAddr(s); err == nil {
				if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
					return paramValue{}, fmt.Errorf("%q is not a unicast address without zone", s)
				}
				a = a.Unmap()
				if slices.Contains(v.addrs, a) {
					return paramValue{}, fmt.Errorf("%s listed twice", a)
				}
				v.addrs = append(v.addrs, a)
				texts = append(texts, a.String())
				continue
			}
			h, err := plainHost(s)
			if err != nil {
				return paramValue{}, err
			}
			if slices.Contains(v.hosts, h) {
				return paramValue{}, fmt.Errorf("%s listed twice", h)
			}
			v.hosts = append(v.hosts, h)
			texts = append(texts, h)
		}
		v.text = strings.Join(texts, ",")
		return v, nil
	case paramURL:
		u, host, port, err := parseURL(raw)
		if err != nil {
			return paramValue{}, err
		}
		v := paramValue{text: u.String(), scheme: u.Scheme, port: port}
		if a, err := netip.ParseAddr(host); err == nil {
			v.addrs = []netip.Addr{a.Unmap()}
		} else {
			v.hosts = []string{host}
		}
		return v, nil
	}
	return paramValue{}, fmt.Errorf("unknown parameter kind %q", p.Kind)
}

// hubHost turns an IoT hub name or host name into the host name.
func hubHost(raw, domain string) (string, error) {
	if !strings.Contains(raw, ".") {
		// Azure IoT hub names: 3 to 50 letters, digits and hyphens, not
		// starting or ending with a hyphen.
		if len(raw) < 3 || len(raw) > 50 {
			return "", fmt.Errorf("hub name %q must have 3 to 50 characters", raw)
		}
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("hub name %q: only letters, digits and hyphens are allowed", raw)
			}
		}
		if raw[0] == '-' || raw[len(raw)-1] == '-' {
			return "", fmt.Errorf("hub name %q must not start or end with a hyphen", raw)
		}
		return strings.ToLower(raw) + "." + domain, nil
	}
	return plainHost(raw)
}

// plainHost normalises a host name that is neither a wildcard nor a
// service name.
func plainHost(s string) (string, error) {
	p, err := hostname.ParsePattern(s)
	if err != nil {
		return "", fmt.Errorf("host %q: %w", s, err)
	}
	if p.Kind != hostname.Exact {
		return "", fmt.Errorf("%q is a %s pattern, not a host name", s, p.Kind)
	}
	return p.Name, nil
}

// parseURL checks an http or https URL and returns its normalised host
// (or address literal) and port.
func parseURL(raw string) (*url.URL, string, uint16, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", 0, fmt.Errorf("url %q: %w", raw, err)
	}
	var port uint16
	switch u.Scheme {
	case "http":
		port = 80
	case "https":
		port = 443
	default:
		return nil, "", 0, fmt.Errorf("url %q: scheme must be http or https", raw)
	}
	if u.User != nil {
		return nil, "", 0, fmt.Errorf("url %q: user information is not allowed", raw)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, "", 0, fmt.Errorf("url %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, "", 0, fmt.Errorf("url %q: port %q outside 1..65535", raw, p)
		}
		port = uint16(n)
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return nil, "", 0, fmt.Errorf("url %q: %s is not a unicast address without zone", raw, host)
		}
		return u, a.Unmap().String(), port, nil
	}
	h, err := plainHost(host)
	if err != nil {
		return nil, "", 0, fmt.Errorf("url %q: %w", raw, err)
	}
	if p := u.Port(); p != "" {
		u.Host = net.JoinHostPort(h, p)
	} else {
		u.Host = h
	}
	return u, h, port, nil
}

// expand fills an endpoint's parameter references.
func (ed endpointData) expand(vals map[string]paramValue) Endpoint {
	if ref, ok := paramRef(ed.URL); ok {
		v := vals[ref]
		e := Endpoint{
			Protocol:  "HTTP over TCP",
			Transport: TCP,
			Port:      v.port,
			Kind:      KindHosts,
			Hosts:     slices.Clone(v.hosts),
			Addrs:     slices.Clone(v.addrs),
			Purpose:   ed.Purpose,
			Optional:  ed.Optional,
			Feature:   ed.Feature,
		}
		if v.scheme == "https" {
			e.Protocol = "HTTPS over TCP"
		}
		return e
	}
	e := Endpoint{
		Protocol:  ed.Protocol,
		Transport: Transport(ed.Transport),
		Port:      uint16(ed.Port),
		PortNote:  ed.PortNote,
		Kind:      Kind(ed.Kind),
		Purpose:   ed.Purpose,
		Optional:  ed.Optional,
		Feature:   ed.Feature,
	}
	if e.Kind == "" {
		e.Kind = KindHosts
	}
	for _, h := range ed.Hosts {
		if ref, ok := paramRef(h); ok {
			v := vals[ref]
			for _, vh := range v.hosts {
				if !slices.Contains(e.Hosts, vh) {
					e.Hosts = append(e.Hosts, vh)
				}
			}
			e.Addrs = append(e.Addrs, v.addrs...)
			continue
		}
		if !slices.Contains(e.Hosts, h) {
			e.Hosts = append(e.Hosts, h)
		}
	}
	return e
}
