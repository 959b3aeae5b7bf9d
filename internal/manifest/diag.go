package manifest

import (
	"fmt"
	"strings"
)

// Severity says whether a Diagnostic stops a manifest from loading.
type Severity uint8

const (
	// Warning marks something suspicious that does not stop loading.
	Warning Severity = iota + 1
	// Error marks something that stops the manifest from loading.
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// MarshalText gives "error" or "warning".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "error" or "warning".
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "warning":
		*s = Warning
	case "error":
		*s = Error
	default:
		return fmt.Errorf("unknown severity %q", b)
	}
	return nil
}

// AzureCode is the error number Azure Sphere reports when it refuses a
// manifest (category 2, "AppManifestError", is 2<<20 plus the error's index).
// Keeping it lets people who come from Azure Sphere recognise the problem.
type AzureCode int

// The manifest errors Azure Sphere documents, from its device REST API error
// table and its on-device error catalogue.
const (
	CodeJSONParse                    AzureCode = 2097153 // Could not parse application manifest JSON
	CodeMissingEntryPoint            AzureCode = 2097155
	CodeMissingSchemaVersion         AzureCode = 2097156
	CodeMissingCmdArgs               AzureCode = 2097157
	CodeMissingCapabilities          AzureCode = 2097158
	CodeConnectionsParse             AzureCode = 2097161 // ConnectionsParseError
	CodeGpioParse                    AzureCode = 2097162
	CodeNetworkConfigParse           AzureCode = 2097163 // NetworkConfigParseError
	CodePeripheralParse              AzureCode = 2097165
	CodeWifiConfigParse              AzureCode = 2097167
	CodeEntryPointParse              AzureCode = 2097168
	CodeSchemaVersion                AzureCode = 2097169
	CodeDeviceAuthenticationParse    AzureCode = 2097176
	CodeApplicationType              AzureCode = 2097178
	CodeDeviceAuthenticationTooLong  AzureCode = 2097181
	CodeSystemTimeParse              AzureCode = 2097182
	CodeMutableStorageNotObject      AzureCode = 2097183
	CodeMutableStorageNoSize         AzureCode = 2097184
	CodeMutableStorageParse          AzureCode = 2097185
	CodeTCPPortsParse                AzureCode = 2097188 // AllowedTcpPortsParseError
	CodeUDPPortsParse                AzureCode = 2097189 // AllowedUdpPortsParseError
	CodeTCPPortsValue                AzureCode = 2097190 // IllegalTcpPortsValue
	CodeUDPPortsValue                AzureCode = 2097191 // IllegalUdpPortsValue
	CodeTimeSyncConfigParse          AzureCode = 2097192 // TimeSyncConfigParseError
	CodeDhcpServiceParse             AzureCode = 2097193 // DhcpServiceParseError
	CodeSntpServiceParse             AzureCode = 2097194 // SntpServiceParseError
	CodeAppConnectionsParse          AzureCode = 2097195
	CodeCertStoreParse               AzureCode = 2097196
	CodeEnterpriseWifiConfigParse    AzureCode = 2097197
	CodeSystemEventNotificationParse AzureCode = 2097198
	CodeSoftwareUpdateDeferralParse  AzureCode = 2097199
	CodePowerControlsParse           AzureCode = 2097200
	CodePowerControlsEmpty           AzureCode = 2097201
	CodePowerControlsValue           AzureCode = 2097202
	CodeHardwareAddressConfigParse   AzureCode = 2097203 // HardwareAddressConfigParseError
	CodeReadNetworkProxyConfigParse  AzureCode = 2097208 // ReadNetworkProxyConfigParseError
	CodeMallocVersionParse           AzureCode = 2097211
	CodeInvalidComponentID           AzureCode = 7340079 // image has an invalid component ID
)

// codeNames are the symbolic names Azure Sphere's error catalogue gives;
// codes without a published name are absent.
var codeNames = map[AzureCode]string{
	CodeConnectionsParse:            "ConnectionsParseError",
	CodeNetworkConfigParse:          "NetworkConfigParseError",
	CodeTCPPortsParse:               "AllowedTcpPortsParseError",
	CodeUDPPortsParse:               "AllowedUdpPortsParseError",
	CodeTCPPortsValue:               "IllegalTcpPortsValue",
	CodeUDPPortsValue:               "IllegalUdpPortsValue",
	CodeTimeSyncConfigParse:         "TimeSyncConfigParseError",
	CodeDhcpServiceParse:            "DhcpServiceParseError",
	CodeSntpServiceParse:            "SntpServiceParseError",
	CodeHardwareAddressConfigParse:  "HardwareAddressConfigParseError",
	CodeReadNetworkProxyConfigParse: "ReadNetworkProxyConfigParseError",
}

// Name is the symbolic name of the code, or "" when Azure Sphere publishes
// none.
func (c AzureCode) Name() string { return codeNames[c] }

// Position is a 1-based line and column (in characters) in a file.
type Position struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// Diagnostic is one problem found in a manifest.
type Diagnostic struct {
	File string `json:"file"`
	// Path is the JSON path of the value, such as
	// "Capabilities.AllowedConnections[3]"; empty for the whole file.
	Path string `json:"path,omitempty"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
	// Entry is the offending value as written in the file (JSON text,
	// shortened when long); empty when there is none, as for a missing field.
	Entry    string   `json:"entry,omitempty"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Code and CodeName are what Azure Sphere reports for the same problem,
	// when it has a code for it.
	Code     AzureCode `json:"code,omitempty"`
	CodeName string    `json:"codeName,omitempty"`
	// AzureRefuses marks a warning about something pinhole accepts but Azure
	// Sphere refuses (a missing required field); lint --strict makes it an
	// error.
	AzureRefuses bool `json:"azureRefuses,omitempty"`
}

// String formats the diagnostic like a compiler message:
// file:line:col: error: path: entry: message (Azure Sphere error N Name).
func (d Diagnostic) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: %s: ", d.File, d.Line, d.Col, d.Severity)
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	if d.Entry != "" {
		b.WriteString(d.Entry)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	if d.Code != 0 {
		fmt.Fprintf(&b, " (Azure Sphere error %d", d.Code)
		if d.CodeName != "" {
			b.WriteString(" " + d.CodeName)
		}
		b.WriteString(")")
	}
	return b.String()
}

// InvalidError is the error Parse and Load return for a manifest with
// errors. It holds every error found, in file order.
type InvalidError struct {
	File        string
	Diagnostics []Diagnostic
}

func (e *InvalidError) Error() string {
	lines := make([]string, 0, len(e.Diagnostics)+1)
	if len(e.Diagnostics) != 1 {
		lines = append(lines, fmt.Sprintf("%s: %d errors in manifest:", e.File, len(e.Diagnostics)))
	}
	for _, d := range e.Diagnostics {
		lines = append(lines, d.String())
	}
	return strings.Join(lines, "\n")
}

// Count returns the number of errors and warnings in diags.
func Count(diags []Diagnostic) (errs, warnings int) {
	for _, d := range diags {
		switch d.Severity {
		case Error:
			errs++
		case Warning:
			warnings++
		}
	}
	return errs, warnings
}
