// Package config reads pinholed's config file: YAML, strictly parsed into
// typed, validated values. Every problem in a file is reported at once, each
// with its line, column and key path (such as "apps[2].manifest").
//
// examples/pinhole.yaml documents every key.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/pinhole-net/pinhole/internal/catalog"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

// Reserved identity names; the same as policy.SystemName and
// policy.UnmanagedName (config cannot import policy, which imports config).
const (
	SystemName    = "system"
	UnmanagedName = "unmanaged"
)

// Defaults of the optional keys.
const (
	DefaultProfile        = "azure-sphere"
	DefaultSystemMark     = uint32(0x70680000) // policy.DefaultSystemMark
	DefaultNFLOGGroup     = 100
	DefaultLogRate        = 10
	DefaultLogBurst       = 50
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultStubPortBase   = 5300
	DefaultTTLFloor       = 30 * time.Second
	DefaultTTLCeiling     = time.Hour
	DefaultGrace          = 60 * time.Second
	DefaultMaxPerApp      = 4096
	DefaultMaxPerName     = 64
	DefaultInsertTimeout  = 100 * time.Millisecond
	DefaultQueryTimeout   = 2 * time.Second
	DefaultRateLimit      = 200
	DefaultBurst          = 400
	DefaultMaxInFlight    = 64
	DefaultBaud           = 115200
	DefaultLinkInterface  = "pinhole-svc"
	DefaultLinkAPIPort    = 80
	DefaultAPISocket      = "/run/pinhole/api.sock"
	DefaultAPIGroup       = "pinhole"
	DefaultStateDir       = "/var/lib/pinhole"
	DefaultUpstreamPort   = 53
	MaxTimeServers        = 2
	MaxProxyAddressLen    = 255
	MaxProxyCredentialLen = 63
	MaxNoProxyLen         = 255
)

// The service link's fixed subnet, the PC's address on it, and the default
// address of the device.
var (
	ServiceLinkPrefix     = netip.MustParsePrefix("192.168.35.0/24")
	ServiceLinkPC         = netip.MustParseAddr("192.168.35.1")
	DefaultServiceLinkDev = netip.MustParseAddr("192.168.35.2")
)

// Mode says whether denials are enforced or only logged (policy.Mode).
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeAudit   Mode = "audit"
)

// Unmanaged says what happens to traffic of processes that belong to no
// app (policy.Unmanaged).
type Unmanaged string

const (
	UnmanagedDeny  Unmanaged = "deny"
	UnmanagedAllow Unmanaged = "allow"
)

// Config is a loaded, validated config file.
type Config struct {
	// File is the path the config was read from, as given.
	File        string
	Profile     Profile
	Mode        Mode
	Unmanaged   Unmanaged
	SystemMark  uint32
	Firewall    Firewall
	DNS         DNS
	Time        Time
	Proxy       Proxy
	ServiceLink ServiceLink
	API         API
	StateDir    string
	Log         Log
	// Apps are in config order; an app's DNS stub port is
	// DNS.StubPortBase plus its index.
	Apps []App
}

// Profile names the endpoint catalog profile of pinholed's own traffic.
type Profile struct {
	Name string
	// Params are the catalog parameters the file sets ("hub",
	// "ntp_servers", "connectivity_url"), as catalog.Load takes them; nil
	// if none.
	Params map[string]string
}

// Load returns the catalog profile with the parameters applied.
func (p Profile) Load() (*catalog.Profile, error) { return catalog.Load(p.Name, p.Params) }

// Firewall holds the settings of denial logging.
type Firewall struct {
	NFLOGGroup uint16
	// LogRate is how many denial records per second each chain may send to
	// NFLOG; LogBurst its bucket.
	LogRate  uint32
	LogBurst uint32
}

// DNS holds the settings of the per-app resolver stubs and the store of
// learned addresses.
type DNS struct {
	// Upstreams are the servers to forward to; when empty, ResolvConf
	// names the file to read them from (see ReadResolvConf).
	Upstreams  []netip.AddrPort
	ResolvConf string
	// StubPortBase is the port of the first app's stub; app i listens on
	// StubPortBase+i.
	StubPortBase uint16
	// Learned addresses live for their TTL clamped to [TTLFloor,
	// TTLCeiling], plus Grace.
	TTLFloor   time.Duration
	TTLCeiling time.Duration
	Grace      time.Duration
	// MaxAddressesPerApp and MaxAddressesPerName cap the learned store.
	MaxAddressesPerApp  int
	MaxAddressesPerName int
	// InsertTimeout bounds the wait for the kernel to take new addresses
	// before the answer goes to the app; QueryTimeout bounds one upstream
	// query.
	InsertTimeout time.Duration
	QueryTimeout  time.Duration
	// AllowPrivate are the names whose answers may be private, loopback or
	// link-local addresses (exempt from rebinding protection).
	AllowPrivate []hostname.Pattern
	// RateLimit is queries per second per app, Burst its bucket;
	// MaxInFlight caps concurrent upstream queries per app.
	RateLimit   float64
	Burst       int
	MaxInFlight int
}

// TimeSource says which NTP servers time sync uses, as the original's
// EnableDefaultNtp, EnableCustomNtp and EnableAutomaticNtp do.
type TimeSource string

const (
	TimeSourceDefault TimeSource = "default" // the profile's servers
	TimeSourceCustom  TimeSource = "custom"  // Time.Servers
	TimeSourceDHCP    TimeSource = "dhcp"    // DHCP option 42
)

// Time holds the settings of time synchronisation.
type Time struct {
	Enabled bool
	Source  TimeSource
	// Servers are the custom servers (at most two), tried in order.
	Servers []Host
	// Fallback says whether the profile's servers are tried after the
	// custom or DHCP ones.
	Fallback bool
}

// Host is a host name or an IP address.
type Host struct {
	Name string     // normalised host name, when not an address
	Addr netip.Addr // when an address
}

// IsZero reports whether h is unset.
func (h Host) IsZero() bool { return h.Name == "" && !h.Addr.IsValid() }

func (h Host) String() string {
	if h.Addr.IsValid() {
		return h.Addr.String()
	}
	return h.Name
}

// ParseHost reads a host name (normalised) or an IP address.
func ParseHost(s string) (Host, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.IsUnspecified() || a.IsMulticast() {
			return Host{}, fmt.Errorf("%s is not a unicast address", s)
		}
		if a.Zone() != "" {
			return Host{}, fmt.Errorf("%s: an address with a zone names a link, not a host", s)
		}
		return Host{Addr: a.Unmap()}, nil
	}
	p, err := hostname.ParsePattern(s)
	if err != nil {
		return Host{}, fmt.Errorf("%q is neither an IP address nor a host name: %w", s, err)
	}
	if p.Kind != hostname.Exact {
		return Host{}, fmt.Errorf("%q is a %s pattern, not a host name", s, p.Kind)
	}
	return Host{Name: p.Name}, nil
}

// ProxyAuth is the proxy authentication type.
type ProxyAuth string

const (
	ProxyAnonymous ProxyAuth = "anonymous"
	ProxyBasic     ProxyAuth = "basic"
)

// Proxy is the upstream HTTP proxy, with the original's fields and limits.
type Proxy struct {
	Enabled bool
	// Address is zero when no proxy is configured.
	Address Host
	Port    uint16
	Auth    ProxyAuth
	// Username, and Password or PasswordFile, are set for ProxyBasic only.
	// Use ReadPassword for the password. Never print Password.
	Username     string
	Password     string
	PasswordFile string
	// NoProxy are the hosts reached directly: host names, ".domain" or
	// "*.domain" suffixes, addresses and prefixes.
	NoProxy []string
}

// ReadPassword returns the basic-auth password: Password, or the first line
// of PasswordFile.
func (p Proxy) ReadPassword() (string, error) {
	if p.PasswordFile == "" {
		return p.Password, nil
	}
	b, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("read proxy password: %w", err)
	}
	pw := string(b)
	if i := indexNewline(pw); i >= 0 {
		if rest := pw[i:]; rest != "\n" && rest != "\r\n" {
			return "", fmt.Errorf("proxy password file %s: more than one line", p.PasswordFile)
		}
		pw = pw[:i]
	}
	if err := CheckProxyCredential(pw); err != nil {
		return "", fmt.Errorf("proxy password file %s: %w", p.PasswordFile, err)
	}
	return pw, nil
}

func indexNewline(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return i
		}
	}
	return -1
}

// ServiceLink is the IP-over-serial link to a field engineer's PC, on the
// fixed subnet ServiceLinkPrefix.
type ServiceLink struct {
	Enabled bool
	// Serial is the serial device, such as /dev/ttyS1.
	Serial    string
	Baud      int
	Interface string
	// Address is the device's address on the link (192.168.35.2 to .254).
	Address netip.Addr
	// APIPort is the TCP port of the REST API on Address.
	APIPort uint16
}

// API holds where pinholed serves its REST API and metrics.
type API struct {
	// Socket is the Unix socket path; Group the group allowed to use it
	// ("" for root only).
	Socket string
	Group  string
	// MetricsListen, if valid, is a TCP address serving /metrics.
	MetricsListen netip.AddrPort
}

// LogFormat is the format of pinholed's log.
type LogFormat string

const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// Log holds pinholed's logging settings.
type Log struct {
	Level  slog.Level
	Format LogFormat
}

// IdentityKind tells how an app's processes are recognised.
type IdentityKind uint8

const (
	// IdentityUID: processes running with Identity.UID.
	IdentityUID IdentityKind = iota + 1
	// IdentityUser: processes running as Identity.User, whose UID the policy
	// compiler looks up.
	IdentityUser
	// IdentityCgroup: processes in the cgroup v2 directory Identity.Cgroup
	// or below it.
	IdentityCgroup
)

func (k IdentityKind) String() string {
	switch k {
	case IdentityUID:
		return "uid"
	case IdentityUser:
		return "user"
	case IdentityCgroup:
		return "cgroup"
	}
	return fmt.Sprintf("identity(%d)", uint8(k))
}

// Identity is an app's identity as the config gives it. Exactly the field
// its Kind names is set.
type Identity struct {
	Kind IdentityKind
	UID  uint32 // never 0: root cannot be an app
	User string
	// Cgroup is relative to the cgroup v2 root, without leading or
	// trailing '/', such as "system.slice/weather.service".
	Cgroup string
}

func (id Identity) String() string {
	switch id.Kind {
	case IdentityUID:
		return fmt.Sprintf("uid %d", id.UID)
	case IdentityUser:
		return "user " + id.User
	case IdentityCgroup:
		return "cgroup " + id.Cgroup
	}
	return "no identity"
}

// App is one app on the device.
type App struct {
	Name string
	// Manifest is the path of its app_manifest.json, relative paths taken
	// from the config file's directory.
	Manifest string
	Identity Identity
}

// Default returns the config of an empty file: every default, no apps.
func Default() *Config {
	return &Config{
		Profile:    Profile{Name: DefaultProfile},
		Mode:       ModeEnforce,
		Unmanaged:  UnmanagedDeny,
		SystemMark: DefaultSystemMark,
		Firewall: Firewall{
			NFLOGGroup: DefaultNFLOGGroup,
			LogRate:    DefaultLogRate,
			LogBurst:   DefaultLogBurst,
		},
		DNS: DNS{
			ResolvConf:          DefaultResolvConf,
			StubPortBase:        DefaultStubPortBase,
			TTLFloor:            DefaultTTLFloor,
			TTLCeiling:          DefaultTTLCeiling,
			Grace:               DefaultGrace,
			MaxAddressesPerApp:  DefaultMaxPerApp,
			MaxAddressesPerName: DefaultMaxPerName,
			InsertTimeout:       DefaultInsertTimeout,
			QueryTimeout:        DefaultQueryTimeout,
			RateLimit:           DefaultRateLimit,
			Burst:               DefaultBurst,
			MaxInFlight:         DefaultMaxInFlight,
		},
		Time: Time{Enabled: true, Source: TimeSourceDefault, Fallback: true},
		Proxy: Proxy{
			Auth: ProxyAnonymous,
		},
		ServiceLink: ServiceLink{
			Baud:      DefaultBaud,
			Interface: DefaultLinkInterface,
			Address:   DefaultServiceLinkDev,
			APIPort:   DefaultLinkAPIPort,
		},
		API:      API{Socket: DefaultAPISocket, Group: DefaultAPIGroup},
		StateDir: DefaultStateDir,
		Log:      Log{Level: slog.LevelInfo, Format: LogText},
	}
}

// App returns the app with that name, or nil.
func (c *Config) App(name string) *App {
	for i := range c.Apps {
		if c.Apps[i].Name == name {
			return &c.Apps[i]
		}
	}
	return nil
}

// StubPort returns the DNS stub port of the app at index i.
func (c *Config) StubPort(i int) uint16 { return c.DNS.StubPortBase + uint16(i) }

// MaxFileSize is the largest config file Parse reads.
const MaxFileSize = 1 << 20

// Load reads and parses the config file at path. Relative paths in it are
// taken from the file's directory.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(path, filepath.Dir(abs), data)
}

// Parse parses a config file's contents; file names it in errors, and its
// directory is where relative paths start. Parse reads no files. The error,
// if any, is an *Error listing every problem found.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, filepath.Dir(file), data)
}
