package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"github.com/pinhole-net/pinhole/internal/hostname"
)

// ConnKind classifies an AllowedConnections entry.
type ConnKind uint8

const (
	// ConnHost is one DNS host name.
	ConnHost ConnKind = iota + 1
	// ConnWildcard is "*.domain": any name below domain, never domain itself
	// (pinhole extension).
	ConnWildcard
	// ConnService is a DNS-SD service name such as "_http._tcp.local".
	ConnService
	// ConnIPv4 is an IPv4 address, private and broadcast ones included.
	ConnIPv4
	// ConnIPv6 is an IPv6 address (pinhole extension).
	ConnIPv6
)

func (k ConnKind) String() string {
	switch k {
	case ConnHost:
		return "host"
	case ConnWildcard:
		return "wildcard"
	case ConnService:
		return "dns-sd"
	case ConnIPv4:
		return "ipv4"
	case ConnIPv6:
		return "ipv6"
	}
	return fmt.Sprintf("connkind(%d)", uint8(k))
}

// MarshalText gives the String form.
func (k ConnKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Connection is one validated AllowedConnections entry.
type Connection struct {
	// Raw is the entry as written.
	Raw string
	// Path, Line and Col say where it is: "Capabilities.AllowedConnections[2]".
	Path string
	Line int
	Col  int
	Kind ConnKind
	// Pattern is set for ConnHost, ConnWildcard and ConnService, normalised
	// (lower case, no trailing dot, punycode).
	Pattern hostname.Pattern
	// Addr is set for ConnIPv4 and ConnIPv6.
	Addr netip.Addr
	// Port is the port the entry is limited to, 0 for every port
	// ("host:port" is a pinhole extension).
	Port uint16
}

// IsAddr reports whether the entry is an address literal.
func (c Connection) IsAddr() bool { return c.Kind == ConnIPv4 || c.Kind == ConnIPv6 }

// String gives the canonical form of the entry: the normalised name or
// address, with ":port" ("[v6]:port" for IPv6) when it has one.
func (c Connection) String() string {
	var host string
	if c.IsAddr() {
		host = c.Addr.String()
	} else {
		host = c.Pattern.String()
	}
	if c.Port == 0 {
		return host
	}
	if c.Kind == ConnIPv6 {
		return "[" + host + "]:" + strconv.Itoa(int(c.Port))
	}
	return host + ":" + strconv.Itoa(int(c.Port))
}

// Extension reports whether the entry uses something pinhole accepts but
// Azure Sphere refuses (a wildcard, an IPv6 address or a port), and why.
func (c Connection) Extension() (why string, ok bool) {
	var parts []string
	switch c.Kind {
	case ConnWildcard:
		parts = append(parts, "wildcards are a pinhole extension; Azure Sphere accepts only exact host names")
	case ConnIPv6:
		parts = append(parts, "IPv6 addresses are a pinhole extension; Azure Sphere is IPv4 only")
	}
	if c.Port != 0 {
		parts = append(parts, "ports are a pinhole extension; Azure Sphere entries carry no port")
	}
	return strings.Join(parts, "; "), len(parts) > 0
}

// MarshalJSON gives the entry with its classification, as lint --json
// shows it.
func (c Connection) MarshalJSON() ([]byte, error) {
	type out struct {
		Entry     string   `json:"entry"`
		Path      string   `json:"path,omitempty"`
		Line      int      `json:"line,omitempty"`
		Col       int      `json:"col,omitempty"`
		Kind      ConnKind `json:"kind"`
		Value     string   `json:"value"`
		Port      uint16   `json:"port,omitempty"`
		Extension string   `json:"extension,omitempty"`
	}
	o := out{Entry: c.Raw, Path: c.Path, Line: c.Line, Col: c.Col, Kind: c.Kind, Port: c.Port}
	if c.IsAddr() {
		o.Value = c.Addr.String()
	} else {
		o.Value = c.Pattern.String()
	}
	o.Extension, _ = c.Extension()
	return json.Marshal(o)
}

// errPlaceholder is the reason given for sample placeholders.
var errPlaceholder = errors.New("looks like a placeholder left from a sample: put your real host name here")

// ParseEntry classifies and validates one AllowedConnections entry. The
// result has no position; the error says why the entry is refused.
func ParseEntry(s string) (Connection, error) {
	c := Connection{Raw: s}
	switch {
	case s == "":
		return c, errors.New("empty entry: put the host name or IPv4 address the app connects to here, or remove the entry")
	case isPlaceholder(s):
		return c, errPlaceholder
	}
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		if strings.TrimSpace(s) != s {
			return c, errors.New("has spaces at the start or end; remove them")
		}
		return c, errors.New("contains a space; host names and addresses cannot")
	}
	if strings.Contains(s, "://") {
		return c, urlError(s)
	}
	if strings.Contains(s, "/") {
		if _, err := netip.ParsePrefix(s); err == nil {
			return c, errors.New("is an address range (CIDR); AllowedConnections takes single addresses: list each one")
		}
		host, _, _ := strings.Cut(s, "/")
		if host != "" {
			return c, fmt.Errorf("contains a path; AllowedConnections takes just the host: use %q", host)
		}
		return c, errors.New("contains '/'; AllowedConnections takes a host name or an address")
	}
	hostPart := s
	portPart, hasPort := "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return c, errors.New("has '[' without a closing ']'; write an IPv6 address with a port as [2001:db8::1]:443")
		}
		hostPart = s[1:end]
		rest := s[end+1:]
		switch {
		case rest == "":
			// "[v6]" alone: an address in brackets, no port.
		case rest[0] == ':':
			portPart, hasPort = rest[1:], true
		default:
			return c, fmt.Errorf("unexpected %q after ']'; write an IPv6 address with a port as [2001:db8::1]:443", rest)
		}
		a, err := parseAddr(hostPart)
		if err != nil {
			return c, err
		}
		if !a.Is6() {
			return c, errors.New("brackets are only for IPv6 addresses; write an IPv4 address with a port as 192.0.2.1:443")
		}
		c.Kind, c.Addr = ConnIPv6, a
	} else {
		switch strings.Count(s, ":") {
		case 0:
		case 1:
			hostPart, portPart, hasPort = strings.Cut(s, ":")
			if hostPart == "" {
				return c, errors.New("nothing before ':'; write host:port")
			}
		default:
			// Colons galore: an IPv6 address, maybe with a port written
			// without brackets.
			if _, err := netip.ParseAddr(s); err != nil {
				i := strings.LastIndexByte(s, ':')
				if _, perr := parsePort(s[i+1:]); perr == nil && s[i-1] != ':' {
					if b, err := netip.ParseAddr(s[:i]); err == nil && b.Is6() {
						return c, fmt.Errorf("an IPv6 address with a port must be written in brackets: [%s]:%s", s[:i], s[i+1:])
					}
				}
			}
			a, err := parseAddr(s)
			if err != nil {
				return c, err
			}
			c.Kind, c.Addr = ConnIPv6, a
			return c, nil
		}
	}
	if hasPort {
		p, err := parsePort(portPart)
		if err != nil {
			return c, err
		}
		c.Port = p
	}
	if c.Kind == ConnIPv6 {
		return c, nil
	}
	if err := classifyHost(&c, hostPart); err != nil {
		return c, err
	}
	if c.Kind == ConnService && c.Port != 0 {
		return c, errors.New("a DNS-SD service name takes its ports from its SRV records; remove the \":port\"")
	}
	return c, nil
}

// classifyHost fills in c for a host part without port or brackets: an
// IPv4 address or a host pattern.
func classifyHost(c *Connection, h string) error {
	digitsDots, hasDot, hasStar, hasDigit := true, false, false, false
	for i := 0; i < len(h); i++ {
		switch ch := h[i]; {
		case ch == '.':
			hasDot = true
		case ch == '*':
			hasStar = true
		case ch >= '0' && ch <= '9':
			hasDigit = true
		default:
			digitsDots = false
		}
	}
	digitsDots = digitsDots && hasDigit
	switch {
	case digitsDots && hasStar:
		return errors.New("wildcards in IPv4 addresses are not supported (nor are ranges): list each address")
	case digitsDots && hasDot:
		a, err := parseAddr(h)
		if err != nil {
			return err
		}
		c.Kind, c.Addr = ConnIPv4, a
		return nil
	case digitsDots:
		return errors.New("a bare number is neither a host name nor an IPv4 address")
	}
	p, err := hostname.ParsePattern(h)
	if err != nil {
		return err
	}
	c.Pattern = p
	switch p.Kind {
	case hostname.Exact:
		c.Kind = ConnHost
	case hostname.Wildcard:
		c.Kind = ConnWildcard
	case hostname.Service:
		c.Kind = ConnService
	default:
		return fmt.Errorf("unknown pattern kind %v", p.Kind)
	}
	return nil
}

// parseAddr reads an IP address literal and refuses the ones that cannot
// stand in an allow-list.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return a, fmt.Errorf("not a valid IPv6 address: %s", strings.TrimPrefix(err.Error(), "ParseAddr("+strconv.Quote(s)+"): "))
		}
		return a, fmt.Errorf("not a valid IPv4 address: %s", strings.TrimPrefix(err.Error(), "ParseAddr("+strconv.Quote(s)+"): "))
	}
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("IPv6 zone %q names an interface of one machine; remove the %%zone", a.Zone())
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("IPv4-mapped IPv6 address; write the IPv4 address %s", a.Unmap())
	case a.IsUnspecified():
		return netip.Addr{}, errors.New("the unspecified address matches no destination")
	}
	return a, nil
}

// parsePort reads a decimal port in 1..65535.
func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty port after ':'")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is outside 1..65535", s)
	}
	return uint16(n), nil
}

func urlError(s string) error {
	u, err := url.Parse(s)
	if err == nil && u.Hostname() != "" {
		return fmt.Errorf("is a URL; AllowedConnections takes a host name: use %q", u.Hostname())
	}
	return errors.New("is a URL; AllowedConnections takes just the host name")
}

// placeholderWords start the placeholders that samples ask people to
// replace ("CHANGE THIS", "REPLACE_WITH_YOUR_...").
var placeholderWords = map[string]bool{
	"replace": true, "replaceme": true, "change": true, "changeme": true, "insert": true,
	"enter": true, "put": true, "your": true, "todo": true, "fixme": true, "tbd": true,
}

// isPlaceholder reports whether s looks like text a sample left for the
// user to replace rather than a host name or address.
func isPlaceholder(s string) bool {
	if strings.ContainsAny(s, "<>") || strings.Contains(s, "{{") || strings.Contains(s, "${") || strings.Contains(s, "$(") {
		return true
	}
	if strings.Contains(s, ".") {
		return false
	}
	first := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ' ' || r == '_' || r == '-' })
	if len(first) > 0 && placeholderWords[first[0]] {
		return true
	}
	// Shouting with spaces or underscores and no dot: "IOT HUB HOSTNAME".
	letters, upper := 0, true
	for _, r := range s {
		if unicode.IsLetter(r) {
			letters++
			upper = upper && unicode.IsUpper(r)
		}
	}
	return letters >= 2 && upper && strings.ContainsAny(s, " _")
}

// sampleLabel returns the first label of a valid name that still reads like
// a sample's stand-in ("yourhostname.azure-devices.net"), or "".
func sampleLabel(name string) string {
	for label := range strings.SplitSeq(name, ".") {
		if strings.HasPrefix(label, "your") {
			return label
		}
	}
	return ""
}
