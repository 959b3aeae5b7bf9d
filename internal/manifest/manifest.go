// Package manifest reads Azure Sphere app_manifest.json files as the
// original does, keeping every field it knows, and validates the network
// capabilities fully. Problems come back as Diagnostics that name the file,
// the JSON path, the line and column, the entry, and the Azure Sphere error
// code when the original has one.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MaxSize is the largest manifest accepted; real ones are under 2 KiB.
const MaxSize = 1 << 20

// Application types Azure Sphere knows.
const (
	AppTypeDefault         = "Default"
	AppTypeRealTimeCapable = "RealTimeCapable"
)

// Manifest is a loaded app_manifest.json. A Manifest returned by Parse or
// Load is complete and valid; it is never partly filled.
type Manifest struct {
	// File is the name Parse was given, used in diagnostics.
	File string
	// SchemaVersion is 1, or 0 when the file omits it (code snippets do).
	SchemaVersion int
	Name          string
	ComponentID   string
	EntryPoint    string
	// CmdArgs is nil when the file has no CmdArgs.
	CmdArgs []string
	// ApplicationType is "Default" or "RealTimeCapable"; empty when the file
	// omits it, which Azure Sphere treats as "Default".
	ApplicationType string
	// MallocVersion is 0 when not given.
	MallocVersion int
	Capabilities  Capabilities
	// Unknown holds top-level keys pinhole does not know, as written.
	Unknown map[string]json.RawMessage

	positions map[string]Position
}

// Capabilities holds every capability Azure Sphere documents or its
// samples use. Booleans are false when absent; lists are nil when absent.
type Capabilities struct {
	// AllowedConnections is the outbound allow-list, in file order.
	AllowedConnections []Connection
	// AllowedTCPServerPorts and AllowedUDPServerPorts are the ports the app
	// may accept connections or datagrams on.
	AllowedTCPServerPorts []uint16
	AllowedUDPServerPorts []uint16
	// AllowedApplicationConnections are component IDs of partner apps.
	AllowedApplicationConnections []string

	NetworkConfig            bool
	ReadNetworkProxyConfig   bool
	TimeSyncConfig           bool
	SystemTime               bool
	SntpService              bool
	DhcpService              bool
	HardwareAddressConfig    bool
	WifiConfig               bool
	EnterpriseWifiConfig     bool
	CertStore                bool
	SystemEventNotifications bool
	SoftwareUpdateDeferral   bool
	HeapMemStats             bool

	// DeviceAuthentication is the tenant GUID for device-authenticated TLS.
	DeviceAuthentication string

	// Gpio lists pins by number or by hardware-definition name.
	Gpio              []Peripheral
	Uart              []string
	I2cMaster         []string
	I2cSubordinate    []string
	SpiMaster         []string
	Pwm               []string
	Adc               []string
	ExternalInterrupt []string

	// MutableStorage is nil when absent.
	MutableStorage *MutableStorage
	// PowerControls holds "ForcePowerDown", "ForceReboot", "SetPowerProfile".
	PowerControls []string

	// Unknown holds capabilities pinhole does not know, as written.
	Unknown map[string]json.RawMessage
}

// Peripheral is a GPIO given by number (Gpio: [ 9 ]) or by name
// (Gpio: [ "$SAMPLE_LED" ]).
type Peripheral struct {
	Name    string
	Number  int
	Numeric bool
}

// MarshalJSON writes the peripheral back as written: a number or a string.
func (p Peripheral) MarshalJSON() ([]byte, error) {
	if p.Numeric {
		return json.Marshal(p.Number)
	}
	return json.Marshal(p.Name)
}

func (p Peripheral) String() string {
	if p.Numeric {
		return fmt.Sprint(p.Number)
	}
	return p.Name
}

// MutableStorage is the app's persistent storage quota.
type MutableStorage struct {
	SizeKB int
}

// Position returns where the value at a JSON path such as
// "Capabilities.AllowedTcpServerPorts[0]" is in the file.
func (m *Manifest) Position(path string) (Position, bool) {
	p, ok := m.positions[path]
	return p, ok
}

// Load reads and parses the manifest at path. See Parse.
func Load(path string) (*Manifest, []Diagnostic, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse reads a manifest; file names it in diagnostics. It returns every
// diagnostic found, in file order. When any of them is an error, the
// Manifest is nil and the error is an *InvalidError holding all errors;
// otherwise the diagnostics are warnings only.
func Parse(file string, data []byte) (*Manifest, []Diagnostic, error) {
	c := newChecker(file, data)
	m := c.check()
	diags := c.sorted()
	var errs []Diagnostic
	for _, d := range diags {
		if d.Severity == Error {
			errs = append(errs, d)
		}
	}
	if len(errs) > 0 {
		return nil, diags, &InvalidError{File: file, Diagnostics: errs}
	}
	if m == nil {
		// Unreachable: the checker only fails with an error diagnostic.
		return nil, diags, errors.New("manifest: internal error: no manifest and no error")
	}
	return m, diags, nil
}

// Strict turns a loaded manifest's diagnostics into what Azure Sphere
// itself would say: warnings about what it refuses become errors, and every
// pinhole extension (wildcards, IPv6, ports) is an error too.
func Strict(m *Manifest, diags []Diagnostic) []Diagnostic {
	out := make([]Diagnostic, 0, len(diags))
	for _, d := range diags {
		if d.AzureRefuses && d.Severity == Warning {
			d.Severity = Error
		}
		out = append(out, d)
	}
	if m != nil {
		out = append(out, m.Extensions()...)
		sortDiagnostics(out)
	}
	return out
}

// Extensions returns one error for each AllowedConnections entry that
// Azure Sphere would refuse but pinhole accepts.
func (m *Manifest) Extensions() []Diagnostic {
	var out []Diagnostic
	for _, c := range m.Capabilities.AllowedConnections {
		why, ok := c.Extension()
		if !ok {
			continue
		}
		out = append(out, Diagnostic{
			File: m.File, Path: c.Path, Line: c.Line, Col: c.Col,
			Entry: quoteEntry(c.Raw), Severity: Error, Message: why,
			Code: CodeConnectionsParse, CodeName: CodeConnectionsParse.Name(), AzureRefuses: true,
		})
	}
	return out
}

// quoteEntry writes s as a JSON string, leaving <, > and & readable.
func quoteEntry(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return strconv.Quote(s)
	}
	return shortenEntry(strings.TrimSuffix(b.String(), "\n"))
}
