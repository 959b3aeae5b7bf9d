package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"go.yaml.in/yaml/v3"
)

// parser collects problems while it turns the raw file into a Config.
type parser struct {
	file  string
	dir   string
	nodes map[string]*yaml.Node
	// keys holds the key node of each mapping entry's path, the best place
	// to report a problem about the entry as a whole.
	keys     map[string]*yaml.Node
	problems []Problem
}

// errorAt records a problem at node n, or, if n is nil, at the nearest
// known node on path.
func (p *parser) errorAt(path string, n *yaml.Node, format string, args ...any) {
	pr := Problem{File: p.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n == nil {
		n = p.nodeFor(path)
	}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

// nodeFor finds the node of path or of its closest ancestor.
func (p *parser) nodeFor(path string) *yaml.Node {
	for path != "" {
		if n := p.keys[path]; n != nil {
			return n
		}
		if n := p.nodes[path]; n != nil {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return p.nodes[""]
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlParserErrors are go-yaml's parser (not scanner) messages; go-yaml
// reports their line counted from 0.
var yamlParserErrors = []string{
	"did not find expected ',' or '}'",
	"did not find expected ',' or ']'",
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"found duplicate %YAML directive",
	"found duplicate %TAG directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlProblem turns a go-yaml message ("yaml: line 3: ...") into a Problem.
func (p *parser) yamlProblem(msg string, data []byte) {
	pr := Problem{File: p.file, Msg: strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		pr.Line, _ = strconv.Atoi(m[1])
		pr.Msg = m[2]
	}
	if slices.Contains(yamlParserErrors, pr.Msg) {
		pr.Line++
	}
	if pr.Line > 0 {
		lines := bytes.Split(data, []byte("\n"))
		if pr.Line <= len(lines) {
			l := lines[pr.Line-1]
			indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]
			if bytes.IndexByte(indent, '\t') >= 0 {
				pr.Msg += " (YAML is indented with spaces, not tabs)"
			}
		}
	}
	p.problems = append(p.problems, pr)
}

func parse(file, dir string, data []byte) (*Config, error) {
	p := &parser{file: file, dir: dir, nodes: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	c, err := p.parse(data)
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
		})
		return nil, &Error{Problems: p.problems}
	}
	return c, err
}

func (p *parser) parse(data []byte) (*Config, error) {
	c := Default()
	c.File = p.file
	if len(data) > MaxFileSize {
		p.errorAt("", nil, "%d bytes, more than %d", len(data), MaxFileSize)
		return nil, nil
	}
	// The tree, for positions and the structure check.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // an empty file: every default
		}
		p.yamlProblem(err.Error(), data)
		return nil, nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: "more than one YAML document; a config is one document"})
		return nil, nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return c, nil
	}
	w := walker{p: p, nodes: p.nodes}
	w.walk("", root, reflect.TypeFor[rawConfig]())
	shapeOK := len(p.problems) == 0
	if w.aliases {
		// go-yaml would expand them; stop at the shape's problems.
		return nil, nil
	}

	// The raw values, with unknown keys refused again by go-yaml itself.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	var raw rawConfig
	if err := strict.Decode(&raw); err != nil && shapeOK {
		// The structure check missed something go-yaml caught; report it
		// as go-yaml says it.
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				p.yamlProblem(m, data)
			}
		} else {
			p.yamlProblem(err.Error(), data)
		}
		return nil, nil
	}
	p.config(c, &raw)
	return c, nil
}

// config validates every section into c.
func (p *parser) config(c *Config, r *rawConfig) {
	p.profile(c, r.Profile)
	c.Mode = Mode(p.enum(r.Mode, "mode", string(c.Mode), string(ModeEnforce), string(ModeAudit)))
	c.Unmanaged = Unmanaged(p.enum(r.Unmanaged, "unmanaged", string(c.Unmanaged), string(UnmanagedDeny), string(UnmanagedAllow)))
	if r.SystemMark.set() {
		v, err := strconv.ParseUint(r.SystemMark.n.Value, 0, 32)
		switch {
		case err != nil:
			p.errorAt("system_mark", r.SystemMark.n, "%q is not a 32-bit number (write it like 0x70680000)", r.SystemMark.n.Value)
		case v == 0:
			p.errorAt("system_mark", r.SystemMark.n, "0 is the mark of every unmarked socket; choose another")
		default:
			c.SystemMark = uint32(v)
		}
	}
	if f := r.Firewall; f != nil {
		c.Firewall.NFLOGGroup = uint16(p.uint(f.NFLOGGroup, "firewall.nflog_group", DefaultNFLOGGroup, 0, math.MaxUint16))
		c.Firewall.LogRate = uint32(p.uint(f.LogRate, "firewall.log_rate", DefaultLogRate, 1, 1e6))
		c.Firewall.LogBurst = uint32(p.uint(f.LogBurst, "firewall.log_burst", DefaultLogBurst, 1, 1e6))
	}
	p.dns(&c.DNS, r.DNS, len(r.Apps))
	p.time(&c.Time, r.Time)
	p.proxy(&c.Proxy, r.Proxy)
	p.serviceLink(&c.ServiceLink, r.ServiceLink)
	p.api(&c.API, r.API)
	if r.StateDir.set() {
		c.StateDir = p.absPath(r.StateDir, "state_dir")
	}
	if l := r.Log; l != nil {
		lv := p.enum(l.Level, "log.level", "info", "debug", "info", "warn", "error")
		_ = c.Log.Level.UnmarshalText([]byte(lv))
		c.Log.Format = LogFormat(p.enum(l.Format, "log.format", string(LogText), string(LogText), string(LogJSON)))
	}
	p.apps(c, r.Apps)
}

// Scalar readers. Each records a problem and returns the default when the
// value is bad.

// str returns a present value's text.
func (p *parser) str(s scalar, def string) string {
	if !s.set() {
		return def
	}
	return s.n.Value
}

func (p *parser) enum(s scalar, path, def string, allowed ...string) string {
	if !s.set() {
		return def
	}
	if slices.Contains(allowed, s.n.Value) {
		return s.n.Value
	}
	p.errorAt(path, s.n, "%q is not one of %s", s.n.Value, strings.Join(allowed, ", "))
	return def
}

func (p *parser) boolean(s scalar, path string, def bool) bool {
	if !s.set() {
		return def
	}
	switch s.n.Value {
	case "true", "True", "TRUE":
		return true
	case "false", "False", "FALSE":
		return false
	}
	p.errorAt(path, s.n, "%q is not true or false", s.n.Value)
	return def
}

// uint reads a decimal integer in [lo, hi].
func (p *parser) uint(s scalar, path string, def, lo, hi uint64) uint64 {
	if !s.set() {
		return def
	}
	v, err := strconv.ParseUint(s.n.Value, 10, 64)
	if err != nil {
		p.errorAt(path, s.n, "%q is not a whole number", s.n.Value)
		return def
	}
	if v < lo || v > hi {
		p.errorAt(path, s.n, "%d is outside %d..%d", v, lo, hi)
		return def
	}
	return v
}

// port reads a port number 1..65535.
func (p *parser) port(s scalar, path string, def uint16) uint16 {
	return uint16(p.uint(s, path, uint64(def), 1, math.MaxUint16))
}

// duration reads a Go duration ("30s", "1h30m") in [lo, hi].
func (p *parser) duration(s scalar, path string, def, lo, hi time.Duration) time.Duration {
	if !s.set() {
		return def
	}
	v := s.n.Value
	d, err := time.ParseDuration(v)
	if err != nil {
		if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
			p.errorAt(path, s.n, "%s has no unit; write it like %ss or %sms", v, v, v)
		} else {
			p.errorAt(path, s.n, "%q is not a duration like 30s, 100ms or 1h", v)
		}
		return def
	}
	if d < lo || d > hi {
		p.errorAt(path, s.n, "%s is outside %s..%s", d, lo, hi)
		return def
	}
	return d
}

// absPath reads a path that must be absolute.
func (p *parser) absPath(s scalar, path string) string {
	v := s.n.Value
	if !filepath.IsAbs(v) {
		p.errorAt(path, s.n, "%q must be an absolute path", v)
		return ""
	}
	return filepath.Clean(v)
}

// relPath reads a path; a relative one starts at the config's directory.
func (p *parser) relPath(s scalar, path string) string {
	v := s.n.Value
	if v == "" {
		p.errorAt(path, s.n, "empty path")
		return ""
	}
	if strings.ContainsRune(v, 0) {
		p.errorAt(path, s.n, "path contains a NUL byte")
		return ""
	}
	if filepath.IsAbs(v) {
		return filepath.Clean(v)
	}
	return filepath.Join(p.dir, v)
}

func (p *parser) profile(c *Config, r *rawProfile) {
	if r == nil {
		return
	}
	name := p.str(r.Name, DefaultProfile)
	params := map[string]string{}
	if r.Hub.set() {
		params["hub"] = r.Hub.n.Value
	}
	if r.NTPServers != nil {
		var list []string
		for i, s := range r.NTPServers {
			if !s.set() {
				continue
			}
			if strings.Contains(s.n.Value, ",") {
				p.errorAt(fmt.Sprintf("profile.ntp_servers[%d]", i), s.n, "one server per list entry")
				return
			}
			list = append(list, s.n.Value)
		}
		if len(list) == 0 {
			p.errorAt("profile.ntp_servers", nil, "empty list; remove the key to get the profile's default")
			return
		}
		params["ntp_servers"] = strings.Join(list, ",")
	}
	if r.ConnectivityURL.set() {
		params["connectivity_url"] = r.ConnectivityURL.n.Value
	}
	if len(params) == 0 {
		params = nil
	}
	if _, err := catalog.Load(name, params); err != nil {
		var pe *catalog.ParamError
		switch {
		case errors.As(err, &pe):
			p.errorAt("profile."+pe.Param, nil, "%v", pe.Err)
		case errors.Is(err, catalog.ErrUnknownProfile):
			p.errorAt("profile.name", nil, "unknown profile %q (known: %s)", name, strings.Join(catalog.Names(), ", "))
		default:
			p.errorAt("profile", nil, "%v", err)
		}
		return
	}
	c.Profile = Profile{Name: name, Params: params}
}

func (p *parser) dns(d *DNS, r *rawDNS, apps int) {
	if r == nil {
		r = &rawDNS{}
	}
	if len(r.Upstreams) > 0 {
		if r.ResolvConf.set() {
			p.errorAt("dns.resolv_conf", r.ResolvConf.n, "give either upstreams or resolv_conf, not both")
		}
		d.ResolvConf = ""
		for i, s := range r.Upstreams {
			if !s.set() {
				continue
			}
			path := fmt.Sprintf("dns.upstreams[%d]", i)
			ap, err := ParseUpstream(s.n.Value)
			if err != nil {
				p.errorAt(path, s.n, "%v", err)
				continue
			}
			if slices.Contains(d.Upstreams, ap) {
				p.errorAt(path, s.n, "%s listed twice", ap)
				continue
			}
			d.Upstreams = append(d.Upstreams, ap)
		}
	} else if r.Upstreams != nil {
		p.errorAt("dns.upstreams", nil, "empty list; remove the key to use %s", DefaultResolvConf)
	} else if r.ResolvConf.set() {
		d.ResolvConf = p.relPath(r.ResolvConf, "dns.resolv_conf")
	}
	d.StubPortBase = p.port(r.StubPortBase, "dns.stub_port_base", DefaultStubPortBase)
	if apps > 0 && int(d.StubPortBase)+apps-1 > math.MaxUint16 {
		p.errorAt("dns.stub_port_base", r.StubPortBase.n, "%d apps need ports %d..%d, beyond 65535", apps, d.StubPortBase, int(d.StubPortBase)+apps-1)
	}
	d.TTLFloor = p.duration(r.TTLFloor, "dns.ttl_floor", DefaultTTLFloor, 0, 24*time.Hour)
	d.TTLCeiling = p.duration(r.TTLCeiling, "dns.ttl_ceiling", DefaultTTLCeiling, time.Second, 24*time.Hour)
	if d.TTLFloor > d.TTLCeiling {
		n := r.TTLFloor.n
		if n == nil {
			n = r.TTLCeiling.n
		}
		p.errorAt("dns.ttl_floor", n, "ttl_floor %s is above ttl_ceiling %s", d.TTLFloor, d.TTLCeiling)
	}
	d.Grace = p.duration(r.Grace, "dns.grace", DefaultGrace, 0, 24*time.Hour)
	d.MaxAddressesPerApp = int(p.uint(r.MaxAddressesPerApp, "dns.max_addresses_per_app", DefaultMaxPerApp, 1, 1<<20))
	d.MaxAddressesPerName = int(p.uint(r.MaxAddressesPerName, "dns.max_addresses_per_name", DefaultMaxPerName, 1, 1<<20))
	if d.MaxAddressesPerName > d.MaxAddressesPerApp {
		n := r.MaxAddressesPerName.n
		if n == nil {
			n = r.MaxAddressesPerApp.n
		}
		p.errorAt("dns.max_addresses_per_name", n, "max_addresses_per_name %d is above max_addresses_per_app %d", d.MaxAddressesPerName, d.MaxAddressesPerApp)
	}
	d.InsertTimeout = p.duration(r.InsertTimeout, "dns.insert_timeout", DefaultInsertTimeout, time.Millisecond, 10*time.Second)
	d.QueryTimeout = p.duration(r.QueryTimeout, "dns.query_timeout", DefaultQueryTimeout, 10*time.Millisecond, time.Minute)
	for i, s := range r.AllowPrivate {
		if !s.set() {
			continue
		}
		path := fmt.Sprintf("dns.allow_private[%d]", i)
		pat, err := hostname.ParsePattern(s.n.Value)
		if err != nil {
			p.errorAt(path, s.n, "%q: %v", s.n.Value, err)
			continue
		}
		if slices.Contains(d.AllowPrivate, pat) {
			p.errorAt(path, s.n, "%s listed twice", pat)
			continue
		}
		d.AllowPrivate = append(d.AllowPrivate, pat)
	}
	if r.RateLimit.set() {
		v, err := strconv.ParseFloat(r.RateLimit.n.Value, 64)
		switch {
		case err != nil || math.IsNaN(v) || math.IsInf(v, 0):
			p.errorAt("dns.rate_limit", r.RateLimit.n, "%q is not a number of queries per second", r.RateLimit.n.Value)
		case v <= 0 || v > 1e6:
			p.errorAt("dns.rate_limit", r.RateLimit.n, "%v is outside (0, 1000000] queries per second", v)
		default:
			d.RateLimit = v
		}
	}
	d.Burst = int(p.uint(r.Burst, "dns.burst", DefaultBurst, 1, 1e6))
	d.MaxInFlight = int(p.uint(r.MaxInFlight, "dns.max_in_flight", DefaultMaxInFlight, 1, 1e5))
}

// ParseUpstream reads a DNS server: an IP address, optionally with a port
// ("192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:53").
// The port defaults to 53.
func ParseUpstream(s string) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(s); err == nil {
		ap = netip.AddrPortFrom(a, DefaultUpstreamPort)
	} else if ap, err = netip.ParseAddrPort(s); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address or IP:port", s)
	}
	a := ap.Addr().Unmap()
	switch {
	case a.IsUnspecified(), a.IsMulticast():
		return netip.AddrPort{}, fmt.Errorf("%s is not a unicast address", a)
	case ap.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("%q: port 0", s)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

func (p *parser) time(t *Time, r *rawTime) {
	if r == nil {
		return
	}
	t.Enabled = p.boolean(r.Enabled, "time.enabled", true)
	t.Fallback = p.boolean(r.Fallback, "time.fallback", true)
	for i, s := range r.Servers {
		if !s.set() {
			continue
		}
		path := fmt.Sprintf("time.servers[%d]", i)
		if i >= MaxTimeServers {
			p.errorAt(path, s.n, "at most %d custom servers (the profile's default is a third when fallback is on)", MaxTimeServers)
			break
		}
		h, err := ParseHost(s.n.Value)
		if err != nil {
			p.errorAt(path, s.n, "%v", err)
			continue
		}
		if slices.Contains(t.Servers, h) {
			p.errorAt(path, s.n, "%s listed twice", h)
			continue
		}
		t.Servers = append(t.Servers, h)
	}
	def := TimeSourceDefault
	if len(r.Servers) > 0 {
		def = TimeSourceCustom
	}
	t.Source = TimeSource(p.enum(r.Source, "time.source", string(def), string(TimeSourceDefault), string(TimeSourceCustom), string(TimeSourceDHCP)))
	switch {
	case t.Source == TimeSourceCustom && len(r.Servers) == 0:
		p.errorAt("time.servers", p.nodeFor("time.source"), "source custom needs one or two servers")
	case t.Source != TimeSourceCustom && len(r.Servers) > 0:
		p.errorAt("time.servers", nil, "servers are used only with source: custom, not %s", t.Source)
	}
}

// CheckProxyCredential applies the original's limits to a proxy user name or
// password: 1 to 63 characters, no control characters.
func CheckProxyCredential(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxProxyCredentialLen:
		return fmt.Errorf("%d characters, more than %d", len(s), MaxProxyCredentialLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// CheckProxyUsername is CheckProxyCredential for a user name, which basic
// authentication cannot carry with a ':' in it.
func CheckProxyUsername(s string) error {
	if err := CheckProxyCredential(s); err != nil {
		return err
	}
	if strings.Contains(s, ":") {
		return errors.New("a basic-auth user name cannot contain ':'")
	}
	return nil
}

// ParseProxyAddress reads a proxy's host, an IP address or a host name of at
// most MaxProxyAddressLen characters.
func ParseProxyAddress(s string) (Host, error) {
	if len(s) > MaxProxyAddressLen {
		return Host{}, fmt.Errorf("%d characters, more than %d", len(s), MaxProxyAddressLen)
	}
	return ParseHost(s)
}

func (p *parser) proxy(px *Proxy, r *rawProxy) {
	if r == nil {
		return
	}
	if r.Address.set() {
		if h, err := ParseProxyAddress(r.Address.n.Value); err != nil {
			p.errorAt("proxy.address", r.Address.n, "%v", err)
		} else {
			px.Address = h
		}
	}
	if r.Port.set() {
		px.Port = p.port(r.Port, "proxy.port", 0)
	}
	addrGiven := r.Address.set()
	px.Enabled = p.boolean(r.Enabled, "proxy.enabled", addrGiven)
	switch {
	case addrGiven && !r.Port.set():
		p.errorAt("proxy.port", nil, "the proxy's port is missing")
	case !addrGiven && r.Port.set():
		p.errorAt("proxy.address", nil, "a port is given but no address")
	case !addrGiven && px.Enabled:
		p.errorAt("proxy.address", nil, "the proxy is enabled but has no address")
	}
	px.Auth = ProxyAuth(p.enum(r.Authentication, "proxy.authentication", string(ProxyAnonymous), string(ProxyAnonymous), string(ProxyBasic)))
	if r.Username.set() {
		v := r.Username.n.Value
		if err := CheckProxyUsername(v); err != nil {
			p.errorAt("proxy.username", r.Username.n, "%v", err)
		} else {
			px.Username = v
		}
	}
	if r.Password.set() {
		if err := CheckProxyCredential(r.Password.n.Value); err != nil {
			p.errorAt("proxy.password", r.Password.n, "%v", err)
		} else {
			px.Password = r.Password.n.Value
		}
	}
	if r.PasswordFile.set() {
		px.PasswordFile = p.relPath(r.PasswordFile, "proxy.password_file")
		if r.Password.set() {
			p.errorAt("proxy.password_file", r.PasswordFile.n, "give either password or password_file, not both")
		}
	}
	switch px.Auth {
	case ProxyAnonymous:
		for _, k := range []struct {
			s    scalar
			name string
		}{{r.Username, "username"}, {r.Password, "password"}, {r.PasswordFile, "password_file"}} {
			if k.s.set() {
				p.errorAt("proxy."+k.name, k.s.n, "anonymous authentication takes no %s; set authentication: basic", k.name)
			}
		}
	case ProxyBasic:
		if !r.Username.set() {
			p.errorAt("proxy.username", nil, "basic authentication needs a username")
		}
		if !r.Password.set() && !r.PasswordFile.set() {
			p.errorAt("proxy.password", nil, "basic authentication needs a password or password_file")
		}
	}
	total := 0
	for i, s := range r.NoProxy {
		if !s.set() {
			continue
		}
		path := fmt.Sprintf("proxy.no_proxy[%d]", i)
		v, err := NoProxyEntry(s.n.Value)
		if err != nil {
			p.errorAt(path, s.n, "%v", err)
			continue
		}
		if slices.Contains(px.NoProxy, v) {
			p.errorAt(path, s.n, "%s listed twice", v)
			continue
		}
		if total > 0 {
			total++ // the comma
		}
		total += len(v)
		px.NoProxy = append(px.NoProxy, v)
	}
	if total > MaxNoProxyLen {
		p.errorAt("proxy.no_proxy", nil, "the list is %d characters long written with commas, more than %d", total, MaxNoProxyLen)
	}
}

// NoProxyEntry normalises a no-proxy entry: an address, a prefix, a host
// name, or a domain suffix written ".domain" or "*.domain".
func NoProxyEntry(s string) (string, error) {
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

// baudRates are the rates Linux serial drivers take without custom divisors.
var baudRates = []int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800,
	500000, 576000, 921600, 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000}

// checkIfname applies the kernel's rules for interface names.
func checkIfname(s string) error {
	switch {
	case s == "":
		return errors.New("empty interface name")
	case len(s) > 15:
		return fmt.Errorf("%q is %d characters long, more than 15 (IFNAMSIZ)", s, len(s))
	case s == "." || s == "..":
		return fmt.Errorf("%q is not an interface name", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q: interface names cannot contain '/', ':', spaces or control characters", s)
		}
	}
	return nil
}

func (p *parser) serviceLink(l *ServiceLink, r *rawServiceLink) {
	if r == nil {
		return
	}
	l.Enabled = p.boolean(r.Enabled, "service_link.enabled", false)
	if r.Serial.set() {
		l.Serial = p.absPath(r.Serial, "service_link.serial")
	} else if l.Enabled {
		p.errorAt("service_link.serial", nil, "the service link is enabled but names no serial device")
	}
	if r.Baud.set() {
		b := int(p.uint(r.Baud, "service_link.baud", DefaultBaud, 1, math.MaxInt32))
		if !slices.Contains(baudRates, b) {
			p.errorAt("service_link.baud", r.Baud.n, "%d is not a standard rate (such as 9600, 115200, 921600)", b)
		} else {
			l.Baud = b
		}
	}
	if r.Interface.set() {
		if err := checkIfname(r.Interface.n.Value); err != nil {
			p.errorAt("service_link.interface", r.Interface.n, "%v", err)
		} else {
			l.Interface = r.Interface.n.Value
		}
	}
	if r.Address.set() {
		a, err := netip.ParseAddr(r.Address.n.Value)
		switch {
		case err != nil:
			p.errorAt("service_link.address", r.Address.n, "%q is not an IPv4 address", r.Address.n.Value)
		case !ServiceLinkPrefix.Contains(a) || a.As4()[3] < 2 || a.As4()[3] == 255:
			p.errorAt("service_link.address", r.Address.n, "%s is outside 192.168.35.2 to 192.168.35.254 (the subnet is fixed, .1 is the PC)", a)
		default:
			l.Address = a
		}
	}
	l.APIPort = p.port(r.APIPort, "service_link.api_port", DefaultLinkAPIPort)
}

var groupName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10})$`)

func (p *parser) api(a *API, r *rawAPI) {
	if r == nil {
		return
	}
	if r.Socket.set() {
		s := p.absPath(r.Socket, "api.socket")
		if len(s) > 107 {
			p.errorAt("api.socket", r.Socket.n, "%d bytes long; a Unix socket path has at most 107", len(s))
		} else if s != "" {
			a.Socket = s
		}
	}
	if r.Group.set() {
		g := r.Group.n.Value
		if g != "" && !groupName.MatchString(g) {
			p.errorAt("api.group", r.Group.n, "%q is not a group name or number", g)
		} else {
			a.Group = g
		}
	}
	if r.MetricsListen.set() && r.MetricsListen.n.Value != "" {
		v := r.MetricsListen.n.Value
		ap, err := netip.ParseAddrPort(v)
		switch {
		case err != nil && strings.HasPrefix(v, ":"):
			p.errorAt("api.metrics_listen", r.MetricsListen.n, "%q has no address; write 127.0.0.1%s, or 0.0.0.0%s for every interface", v, v, v)
		case err != nil:
			p.errorAt("api.metrics_listen", r.MetricsListen.n, "%q is not an address and port like 127.0.0.1:9430 or [::1]:9430", v)
		case ap.Port() == 0:
			p.errorAt("api.metrics_listen", r.MetricsListen.n, "port 0")
		default:
			a.MetricsListen = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
}

var (
	appName  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,30}$`)
	userName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$`)
)

// checkCgroup normalises a cgroup path relative to the cgroup v2 root.
func checkCgroup(s string) (string, error) {
	c := strings.Trim(s, "/")
	if c == "" {
		return "", errors.New("the cgroup root would make every process this app; name a cgroup below it")
	}
	if len(c) > 4096 {
		return "", fmt.Errorf("%d bytes, more than 4096", len(c))
	}
	for part := range strings.SplitSeq(c, "/") {
		switch {
		case part == "":
			return "", fmt.Errorf("%q has an empty component ('//')", s)
		case part == "." || part == "..":
			return "", fmt.Errorf("%q: '.' and '..' are not allowed", s)
		case len(part) > 255:
			return "", fmt.Errorf("component %q is longer than 255 bytes", shorten(part))
		}
		for _, r := range part {
			if r < ' ' || r == 0x7f {
				return "", fmt.Errorf("%q contains a control character", s)
			}
		}
	}
	return c, nil
}

func (p *parser) apps(c *Config, raw []rawApp) {
	type owner struct {
		name string
		idx  int
	}
	names := map[string]owner{}
	ids := map[Identity]owner{}
	for i, r := range raw {
		path := fmt.Sprintf("apps[%d]", i)
		var app App
		if !r.Name.set() {
			p.errorAt(path+".name", nil, "every app needs a name")
		} else {
			n := r.Name.n.Value
			switch {
			case n == SystemName || n == UnmanagedName:
				p.errorAt(path+".name", r.Name.n, "%q is reserved", n)
			case !appName.MatchString(n):
				p.errorAt(path+".name", r.Name.n, "%q: a name is 1 to 31 lower-case letters, digits, '_' or '-', starting with a letter or digit", n)
			default:
				if o, dup := names[n]; dup {
					p.errorAt(path+".name", r.Name.n, "app %q is already defined at apps[%d]", n, o.idx)
				}
				names[n] = owner{n, i}
				app.Name = n
			}
		}
		if !r.Manifest.set() {
			p.errorAt(path+".manifest", nil, "every app needs a manifest")
		} else {
			app.Manifest = p.relPath(r.Manifest, path+".manifest")
		}
		var given []string
		for _, k := range []struct {
			s    scalar
			name string
		}{{r.UID, "uid"}, {r.User, "user"}, {r.Cgroup, "cgroup"}} {
			if k.s.set() {
				given = append(given, k.name)
			}
		}
		switch len(given) {
		case 0:
			p.errorAt(path, nil, "the app needs an identity: uid, user or cgroup")
			c.Apps = append(c.Apps, app)
			continue
		case 1:
		default:
			p.errorAt(path+"."+given[1], nil, "more than one identity (%s); give exactly one", strings.Join(given, ", "))
			c.Apps = append(c.Apps, app)
			continue
		}
		idPath := path + "." + given[0]
		switch {
		case r.UID.set():
			v, err := strconv.ParseUint(r.UID.n.Value, 10, 32)
			switch {
			case err != nil:
				p.errorAt(idPath, r.UID.n, "%q is not a user ID", r.UID.n.Value)
			case v == 0:
				p.errorAt(idPath, r.UID.n, "uid 0 (root) cannot be an app: root can set pinholed's socket mark and change the firewall")
			case v == math.MaxUint32:
				p.errorAt(idPath, r.UID.n, "uid 4294967295 is the invalid user ID")
			default:
				app.Identity = Identity{Kind: IdentityUID, UID: uint32(v)}
			}
		case r.User.set():
			v := r.User.n.Value
			switch {
			case v == "root":
				p.errorAt(idPath, r.User.n, "root cannot be an app: root can set pinholed's socket mark and change the firewall")
			case isDigits(v):
				p.errorAt(idPath, r.User.n, "%q is a number; write uid: %s", v, v)
			case !userName.MatchString(v):
				p.errorAt(idPath, r.User.n, "%q is not a user name", v)
			default:
				app.Identity = Identity{Kind: IdentityUser, User: v}
			}
		case r.Cgroup.set():
			cg, err := checkCgroup(r.Cgroup.n.Value)
			if err != nil {
				p.errorAt(idPath, r.Cgroup.n, "%v", err)
			} else {
				app.Identity = Identity{Kind: IdentityCgroup, Cgroup: cg}
			}
		}
		if app.Identity.Kind != 0 {
			me := owner{app.Name, i}
			if o, dup := ids[app.Identity]; dup {
				p.errorAt(idPath, nil, "%s is already the identity of app %q (apps[%d])", app.Identity, o.name, o.idx)
			} else {
				ids[app.Identity] = me
			}
		}
		c.Apps = append(c.Apps, app)
	}
	// A process in a cgroup below another app's cgroup would match both.
	for i, app := range c.Apps {
		if app.Identity.Kind != IdentityCgroup {
			continue
		}
		cg := app.Identity.Cgroup
		for j := strings.LastIndexByte(cg, '/'); j > 0; j = strings.LastIndexByte(cg[:j], '/') {
			if o, ok := ids[Identity{Kind: IdentityCgroup, Cgroup: cg[:j]}]; ok {
				p.errorAt(fmt.Sprintf("apps[%d].cgroup", i), nil, "cgroup %s lies inside cgroup %s of app %q (apps[%d]): its processes would belong to both apps", cg, cg[:j], o.name, o.idx)
			}
		}
	}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
