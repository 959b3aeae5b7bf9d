package manifest

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

// at returns the line and column of the n-th (1-based) occurrence of needle
// in src, counted independently of the package's own line index.
func at(t *testing.T, src, needle string, n int) (int, int) {
	t.Helper()
	off := -1
	for i := 0; i < n; i++ {
		j := strings.Index(src[off+1:], needle)
		if j < 0 {
			t.Fatalf("%q occurs fewer than %d times in the test input", needle, n)
		}
		off += 1 + j
	}
	before := src[:off]
	line := strings.Count(before, "\n") + 1
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	return line, col
}

// diag builds an expected diagnostic placed at the n-th occurrence of needle.
type wantDiag struct {
	sev     Severity
	path    string
	needle  string
	n       int
	entry   string
	code    AzureCode
	message string
	refuses bool
	// line and col, when set, replace needle (for positions past the end).
	line, col int
}

func (w wantDiag) build(t *testing.T, src string) Diagnostic {
	n := w.n
	if n == 0 {
		n = 1
	}
	line, col := w.line, w.col
	if line == 0 {
		line, col = at(t, src, w.needle, n)
	}
	return Diagnostic{File: "m.json", Path: w.path, Line: line, Col: col, Entry: w.entry, Severity: w.sev,
		Message: w.message, Code: w.code, CodeName: w.code.Name(), AzureRefuses: w.refuses}
}

// header is the part every complete manifest in these tests starts with.
const header = `{
  "SchemaVersion": 1,
  "Name": "weather",
  "ComponentId": "1689d8b2-c835-2e27-27ad-e894d6d15fa9",
  "EntryPoint": "/bin/app",
  "CmdArgs": [],
  "ApplicationType": "Default",
`

func TestParseDiagnostics(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		want  []wantDiag
		loads bool
	}{
		{
			name: "every error of a file is reported",
			src: header + `  "Capabilities": {
    "AllowedConnections": [ "ok.example.com", "", "CHANGE THIS", 5, "https://api.example.com/v1", "10.0.0.0/8" ],
    "AllowedTcpServerPorts": [ 0, "80", 80.5, 70000, 443, 443 ],
    "AllowedUdpServerPorts": 1824,
    "NetworkConfig": "yes"
  }
}`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities.AllowedConnections[1]", needle: `""`, entry: `""`, code: CodeConnectionsParse,
					message: "empty entry: put the host name or IPv4 address the app connects to here, or remove the entry"},
				{sev: Error, path: "Capabilities.AllowedConnections[2]", needle: `"CHANGE THIS"`, entry: `"CHANGE THIS"`, code: CodeConnectionsParse,
					message: "looks like a placeholder left from a sample: put your real host name here"},
				{sev: Error, path: "Capabilities.AllowedConnections[3]", needle: `5,`, entry: `5`, code: CodeConnectionsParse,
					message: "must be a string (a host name or an IPv4 address), not a number"},
				{sev: Error, path: "Capabilities.AllowedConnections[4]", needle: `"https`, entry: `"https://api.example.com/v1"`, code: CodeConnectionsParse,
					message: `is a URL; AllowedConnections takes a host name: use "api.example.com"`},
				{sev: Error, path: "Capabilities.AllowedConnections[5]", needle: `"10.0.0.0/8"`, entry: `"10.0.0.0/8"`, code: CodeConnectionsParse,
					message: "is an address range (CIDR); AllowedConnections takes single addresses: list each one"},
				{sev: Error, path: "Capabilities.AllowedTcpServerPorts[0]", needle: `0, "80"`, entry: `0`, code: CodeTCPPortsValue,
					message: "is outside the port range 1..65535"},
				{sev: Error, path: "Capabilities.AllowedTcpServerPorts[1]", needle: `"80"`, entry: `"80"`, code: CodeTCPPortsParse,
					message: "must be a port number, not a string (write it without quotes)"},
				{sev: Error, path: "Capabilities.AllowedTcpServerPorts[2]", needle: `80.5`, entry: `80.5`, code: CodeTCPPortsParse,
					message: "must be a whole number"},
				{sev: Error, path: "Capabilities.AllowedTcpServerPorts[3]", needle: `70000`, entry: `70000`, code: CodeTCPPortsValue,
					message: "is outside the port range 1..65535"},
				{sev: Warning, path: "Capabilities.AllowedTcpServerPorts[5]", needle: `443`, n: 2, entry: `443`,
					message: "duplicate of Capabilities.AllowedTcpServerPorts[4]"},
				{sev: Error, path: "Capabilities.AllowedUdpServerPorts", needle: `1824`, entry: `1824`, code: CodeUDPPortsParse,
					message: "must be an array of port numbers, not a number"},
				{sev: Error, path: "Capabilities.NetworkConfig", needle: `"yes"`, entry: `"yes"`, code: CodeNetworkConfigParse,
					message: "must be true or false, not a string"},
			},
		},
		{
			name: "warnings alone load",
			src: header + `  "Capabilities": {
    "AllowedConnections": [ "Example.com", "example.com.", "127.0.0.1", "yourhostname.azure-devices.net", "[::1]:80" ],
    "DeviceAuthentication": "00000000-0000-0000-0000-000000000000",
    "FutureThing": { "a": [1, 2] }
  },
  "TargetBetaApis": true
}`,
			loads: true,
			want: []wantDiag{
				{sev: Warning, path: "Capabilities.AllowedConnections[1]", needle: `"example.com."`, entry: `"example.com."`,
					message: `duplicate of Capabilities.AllowedConnections[0] (both are "example.com")`},
				{sev: Warning, path: "Capabilities.AllowedConnections[2]", needle: `"127.0.0.1"`, entry: `"127.0.0.1"`,
					message: "loopback is always reachable (pinhole never filters it); the entry has no effect"},
				{sev: Warning, path: "Capabilities.AllowedConnections[3]", needle: `"yourhostname`, entry: `"yourhostname.azure-devices.net"`,
					message: `label "yourhostname" looks like a placeholder left from a sample: put your real host name here`},
				{sev: Warning, path: "Capabilities.AllowedConnections[4]", needle: `"[::1]:80"`, entry: `"[::1]:80"`,
					message: "loopback is always reachable (pinhole never filters it); the entry has no effect"},
				{sev: Warning, path: "Capabilities.DeviceAuthentication", needle: `"0000`, entry: `"00000000-0000-0000-0000-000000000000"`,
					message: "is the all-zero GUID from the samples; device-authenticated TLS needs your tenant ID"},
				{sev: Warning, path: "Capabilities.FutureThing", needle: `"FutureThing"`,
					message: `unknown capability "FutureThing"; kept, but pinhole does not use it`},
				{sev: Warning, path: "TargetBetaApis", needle: `"TargetBetaApis"`,
					message: `unknown field "TargetBetaApis"; kept, but pinhole does not use it`},
			},
		},
		{
			name:  "code snippet fragment loads with warnings for what Azure Sphere requires",
			src:   "{\n  \"Capabilities\": { \"NetworkConfig\": true }\n}",
			loads: true,
			want: []wantDiag{
				{sev: Warning, path: "SchemaVersion", needle: "{", refuses: true, code: CodeMissingSchemaVersion,
					message: `missing; Azure Sphere requires "SchemaVersion": 1`},
				{sev: Warning, path: "Name", needle: "{", refuses: true, message: "missing; Azure Sphere requires the app's name"},
				{sev: Warning, path: "ComponentId", needle: "{", refuses: true, message: "missing; Azure Sphere requires the app's component GUID"},
				{sev: Warning, path: "EntryPoint", needle: "{", refuses: true, code: CodeMissingEntryPoint,
					message: "missing; Azure Sphere requires the path of the app's executable"},
				{sev: Warning, path: "CmdArgs", needle: "{", refuses: true, code: CodeMissingCmdArgs,
					message: "missing; Azure Sphere requires a CmdArgs array (it may be empty) for high-level apps"},
			},
		},
		{
			name: "real-time apps need no CmdArgs",
			src: `{ "SchemaVersion": 1, "Name": "rt", "ComponentId": "005180bc-402f-4cb3-a662-72937dbcde47",
  "EntryPoint": "/bin/app", "Capabilities": { "Uart": [ "ISU0" ] }, "ApplicationType": "RealTimeCapable" }`,
			loads: true,
		},
		{
			name: "missing Capabilities is an error",
			src:  `{ "SchemaVersion": 1, "Name": "x", "ComponentId": "005180bc-402f-4cb3-a662-72937dbcde47", "EntryPoint": "/bin/app", "CmdArgs": [] }`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities", needle: "{", code: CodeMissingCapabilities,
					message: "missing; every manifest needs a Capabilities object (an empty one allows nothing)"},
			},
		},
		{
			name: "top-level fields of the wrong type or value",
			src: `{
  "SchemaVersion": 2,
  "Name": 7,
  "ComponentId": "not-a-guid",
  "EntryPoint": "",
  "CmdArgs": [ "-v", 3 ],
  "ApplicationType": "Realtime",
  "MallocVersion": "2",
  "Capabilities": []
}`,
			want: []wantDiag{
				{sev: Error, path: "SchemaVersion", needle: "2", entry: "2", code: CodeSchemaVersion, message: "is not compatible; the only schema version is 1"},
				{sev: Error, path: "Name", needle: "7", entry: "7", message: "must be a string, not a number"},
				{sev: Error, path: "ComponentId", needle: `"not-a-guid"`, entry: `"not-a-guid"`, code: CodeInvalidComponentID,
					message: "is not a GUID such as 1689d8b2-c835-2e27-27ad-e894d6d15fa9"},
				{sev: Error, path: "EntryPoint", needle: `""`, entry: `""`, code: CodeEntryPointParse,
					message: `is empty; it names the app's executable, such as "/bin/app"`},
				{sev: Error, path: "CmdArgs[1]", needle: "3 ]", entry: "3", code: CodeMissingCmdArgs, message: "must be a string, not a number"},
				{sev: Error, path: "ApplicationType", needle: `"Realtime"`, entry: `"Realtime"`, code: CodeApplicationType,
					message: `unknown application type; Azure Sphere knows "Default" and "RealTimeCapable"`},
				{sev: Error, path: "MallocVersion", needle: `"2"`, entry: `"2"`, code: CodeMallocVersionParse, message: "must be a whole number, not a string"},
				{sev: Error, path: "Capabilities", needle: "[]", entry: "[]", code: CodeMissingCapabilities, message: "must be an object, not an array"},
			},
		},
		{
			name: "SchemaVersion as a string",
			src:  header + `  "Capabilities": {}, "SchemaVersion": "1" }`,
			want: []wantDiag{
				{sev: Error, path: "SchemaVersion", needle: `"SchemaVersion"`, n: 2,
					message: "key repeated (first at line 2:3) with a different value; parsers disagree on which one counts, so keep only one"},
				{sev: Error, path: "SchemaVersion", needle: `"1"`, entry: `"1"`, code: CodeSchemaVersion, message: "must be the number 1, not a string"},
			},
		},
		{
			name: "duplicate keys",
			src: header + `  "Capabilities": {
    "AllowedConnections": [ "a.example.com" ],
    "AllowedConnections": [ "b.example.com" ],
    "NetworkConfig": true,
    "NetworkConfig": true
  }
}`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities.AllowedConnections", needle: `"AllowedConnections"`, n: 2,
					message: "key repeated (first at line 9:5) with a different value; parsers disagree on which one counts, so keep only one"},
				{sev: Warning, path: "Capabilities.NetworkConfig", needle: `"NetworkConfig"`, n: 2,
					message: "key repeated (first at line 11:5) with the same value; remove one"},
			},
		},
		{
			name: "keys differing only in case are errors",
			src:  header + `  "Capabilities": { "allowedConnections": [ "example.com" ] },  "schemaVersion": 1 }`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities.allowedConnections", needle: `"allowedConnections"`,
					message: `capability names are case-sensitive: write "AllowedConnections"`},
				{sev: Error, path: "schemaVersion", needle: `"schemaVersion"`, message: `field names are case-sensitive: write "SchemaVersion"`},
			},
		},
		{
			name: "other capabilities",
			src: header + `  "Capabilities": {
    "Gpio": [ 9, "$LED", -1, "", true ],
    "Uart": [ "ISU0", 3 ],
    "MutableStorage": { "Size": 8 },
    "PowerControls": [ "ForceReboot", "Reboot", "ForceReboot" ],
    "AllowedApplicationConnections": [ "nope" ],
    "DeviceAuthentication": "REPLACE_WITH_YOUR_AZURE_SPHERE_TENANT_ID",
    "SystemTime": 1
  }
}`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities.Gpio[2]", needle: "-1", entry: "-1", code: CodeGpioParse, message: "must be a GPIO number (0 or more)"},
				{sev: Error, path: "Capabilities.Gpio[3]", needle: `""`, entry: `""`, code: CodeGpioParse, message: "is empty; name a GPIO"},
				{sev: Error, path: "Capabilities.Gpio[4]", needle: "true", entry: "true", code: CodeGpioParse, message: "must be a GPIO number or name, not a boolean"},
				{sev: Error, path: "Capabilities.Uart[1]", needle: "3 ]", entry: "3", code: CodePeripheralParse, message: "must be a string, not a number"},
				{sev: Error, path: "Capabilities.MutableStorage", needle: `{ "Size"`, entry: `{"Size":8}`, code: CodeMutableStorageNoSize, message: "must have a SizeKB field"},
				{sev: Warning, path: "Capabilities.MutableStorage.Size", needle: `"Size"`, entry: "8", message: "unknown MutableStorage field; ignored"},
				{sev: Error, path: "Capabilities.PowerControls[1]", needle: `"Reboot"`, entry: `"Reboot"`, code: CodePowerControlsValue,
					message: "unknown power control; Azure Sphere knows ForcePowerDown, ForceReboot, SetPowerProfile"},
				{sev: Error, path: "Capabilities.PowerControls[2]", needle: `"ForceReboot"`, n: 2, entry: `"ForceReboot"`, code: CodePowerControlsParse, message: "listed twice"},
				{sev: Error, path: "Capabilities.AllowedApplicationConnections[0]", needle: `"nope"`, entry: `"nope"`, code: CodeAppConnectionsParse,
					message: "is not a component GUID such as 005180bc-402f-4cb3-a662-72937dbcde47"},
				{sev: Error, path: "Capabilities.DeviceAuthentication", needle: `"REPLACE`, entry: `"REPLACE_WITH_YOUR_AZURE_SPHERE_TENANT_ID"`, code: CodeDeviceAuthenticationParse,
					message: "looks like a placeholder left from a sample: put your Azure Sphere tenant ID here"},
				{sev: Error, path: "Capabilities.SystemTime", needle: "1\n", entry: "1", code: CodeSystemTimeParse, message: "must be true or false, not a number"},
			},
		},
		{
			name: "empty PowerControls and bad MutableStorage",
			src:  header + `  "Capabilities": { "PowerControls": [], "MutableStorage": { "SizeKB": 0 }, "DeviceAuthentication": "52fecdd6-5a57-4cd2-bea1-ec7fa1773c43-0" } }`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities.PowerControls", needle: "[]", n: 2, entry: "[]", code: CodePowerControlsEmpty, message: "is empty; leave it out instead"},
				{sev: Error, path: "Capabilities.MutableStorage.SizeKB", needle: "0 }", entry: "0", code: CodeMutableStorageParse, message: "must be a positive number of KiB"},
				{sev: Error, path: "Capabilities.DeviceAuthentication", needle: `"52fe`, entry: `"52fecdd6-5a57-4cd2-bea1-ec7fa1773c43-0"`, code: CodeDeviceAuthenticationTooLong,
					message: "is too long; it is a tenant GUID of 36 characters"},
			},
		},
		{
			name: "not JSON",
			src:  "{\n  \"Capabilities\": {\n    \"AllowedConnections\": [ \"a\", ]\n  }\n}",
			want: []wantDiag{
				{sev: Error, needle: "]\n", code: CodeJSONParse, message: "not valid JSON: invalid character ']' looking for beginning of value"},
			},
		},
		{
			name: "truncated JSON",
			src:  "{\n  \"Capabilities\": {",
			want: []wantDiag{{sev: Error, line: 2, col: 20, code: CodeJSONParse, message: "not valid JSON: unexpected end of JSON input"}},
		},
		{
			name: "not an object",
			src:  `[ "Capabilities" ]`,
			want: []wantDiag{{sev: Error, needle: "[", entry: `["Capabilities"]`, code: CodeJSONParse, message: "the manifest must be a JSON object, not an array"}},
		},
		{
			name: "empty file",
			src:  "\n\n",
			want: []wantDiag{{sev: Error, needle: "\n", code: CodeJSONParse, message: "file is empty; a manifest is a JSON object"}},
		},
		{
			name: "invalid UTF-8 in a string",
			src:  header + "  \"Capabilities\": { \"AllowedConnections\": [ \"b\xffd.example\" ] } }",
			want: []wantDiag{{sev: Error, needle: "\"b\xff", code: CodeJSONParse, message: "string is not valid UTF-8"}},
		},
		{
			name: "too deep",
			src:  header + `  "Capabilities": { "Deep": ` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "} }",
			want: []wantDiag{{sev: Error, needle: "[", n: 64, code: CodeJSONParse, message: "nested more than 64 levels deep"}},
		},
		{
			name:  "byte order mark",
			src:   "\ufeff" + header + `  "Capabilities": {} }`,
			loads: true,
		},
		{
			name: "escaped strings are decoded",
			src:  header + `  "Capabilities": { "AllowedConnections": [ "ex\u0061mple.com", "a\"b" ] } }`,
			want: []wantDiag{
				{sev: Error, path: "Capabilities.AllowedConnections[1]", needle: `"a\"b"`, entry: `"a\"b"`, code: CodeConnectionsParse,
					message: `label "a\"b" contains '"', which host names may not`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, diags, err := Parse("m.json", []byte(tt.src))
			var want []Diagnostic
			for _, w := range tt.want {
				want = append(want, w.build(t, tt.src))
			}
			if diff := cmp.Diff(want, diags, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("diagnostics mismatch (-want +got):\n%s", diff)
			}
			if tt.loads {
				if err != nil || m == nil {
					t.Fatalf("Parse() = %v, %v; want a manifest", m, err)
				}
				return
			}
			if m != nil {
				t.Errorf("Parse() returned a manifest along with errors: %+v", m)
			}
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Parse() error = %v, want *InvalidError", err)
			}
			var wantErrs []Diagnostic
			for _, d := range want {
				if d.Severity == Error {
					wantErrs = append(wantErrs, d)
				}
			}
			if diff := cmp.Diff(wantErrs, ie.Diagnostics); diff != "" {
				t.Errorf("InvalidError.Diagnostics mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFullManifest(t *testing.T) {
	src := `{
  "SchemaVersion": 1,
  "Name": "Weather",
  "ComponentId": "1689D8B2-c835-2e27-27ad-e894d6d15fa9",
  "EntryPoint": "/bin/app",
  "CmdArgs": [ "--Hostname", "hub.example.net" ],
  "Capabilities": {
    "AllowedConnections": [ "hub.example.net", "*.blob.core.windows.net:443", "192.168.1.200", "2001:db8::5", "_http._tcp.home" ],
    "AllowedTcpServerPorts": [ 11000 ],
    "AllowedUdpServerPorts": [],
    "AllowedApplicationConnections": [ "005180BC-402F-4CB3-A662-72937DBCDE47" ],
    "NetworkConfig": true, "ReadNetworkProxyConfig": true, "TimeSyncConfig": true, "SystemTime": true,
    "SntpService": true, "DhcpService": true, "HardwareAddressConfig": true, "WifiConfig": false,
    "EnterpriseWifiConfig": true, "CertStore": true, "SystemEventNotifications": true,
    "SoftwareUpdateDeferral": true, "HeapMemStats": true,
    "DeviceAuthentication": "52fecdd6-5a57-4cd2-bea1-ec7fa1773c43",
    "Gpio": [ 9, "$SAMPLE_LED" ],
    "Uart": [ "ISU3" ], "I2cMaster": [ "ISU2" ], "I2cSubordinate": [ "ISU1" ], "SpiMaster": [ "ISU0" ],
    "Pwm": [ "PWM-CONTROLLER-0" ], "Adc": [ "ADC-CONTROLLER-0" ], "ExternalInterrupt": [ "EINT4" ],
    "MutableStorage": { "SizeKB": 64 },
    "PowerControls": [ "ForcePowerDown", "ForceReboot", "SetPowerProfile" ],
    "Tomorrow": { "x": 1 }
  },
  "ApplicationType": "Default",
  "MallocVersion": 2,
  "Extra": [1,2]
}`
	m, diags, err := Parse("weather.json", []byte(src))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if e, w := Count(diags); e != 0 || w != 2 {
		t.Errorf("Count(diags) = %d errors, %d warnings, want 0, 2: %v", e, w, diags)
	}
	conn := func(raw, path string, line, col int, kind ConnKind, pat hostname.Pattern, addr string, port uint16) Connection {
		c := Connection{Raw: raw, Path: path, Line: line, Col: col, Kind: kind, Pattern: pat, Port: port}
		if addr != "" {
			c.Addr = netip.MustParseAddr(addr)
		}
		return c
	}
	want := &Manifest{
		File:            "weather.json",
		SchemaVersion:   1,
		Name:            "Weather",
		ComponentID:     "1689D8B2-c835-2e27-27ad-e894d6d15fa9",
		EntryPoint:      "/bin/app",
		CmdArgs:         []string{"--Hostname", "hub.example.net"},
		ApplicationType: AppTypeDefault,
		MallocVersion:   2,
		Unknown:         map[string]json.RawMessage{"Extra": json.RawMessage("[1,2]")},
		Capabilities: Capabilities{
			AllowedConnections: []Connection{
				conn("hub.example.net", "Capabilities.AllowedConnections[0]", 8, 29, ConnHost, hostname.Pattern{Kind: hostname.Exact, Name: "hub.example.net"}, "", 0),
				conn("*.blob.core.windows.net:443", "Capabilities.AllowedConnections[1]", 8, 48, ConnWildcard, hostname.Pattern{Kind: hostname.Wildcard, Name: "blob.core.windows.net"}, "", 443),
				conn("192.168.1.200", "Capabilities.AllowedConnections[2]", 8, 79, ConnIPv4, hostname.Pattern{}, "192.168.1.200", 0),
				conn("2001:db8::5", "Capabilities.AllowedConnections[3]", 8, 96, ConnIPv6, hostname.Pattern{}, "2001:db8::5", 0),
				conn("_http._tcp.home", "Capabilities.AllowedConnections[4]", 8, 111, ConnService, hostname.Pattern{Kind: hostname.Service, Name: "_http._tcp.home"}, "", 0),
			},
			AllowedTCPServerPorts:         []uint16{11000},
			AllowedUDPServerPorts:         []uint16{},
			AllowedApplicationConnections: []string{"005180BC-402F-4CB3-A662-72937DBCDE47"},
			NetworkConfig:                 true, ReadNetworkProxyConfig: true, TimeSyncConfig: true, SystemTime: true,
			SntpService: true, DhcpService: true, HardwareAddressConfig: true, WifiConfig: false,
			EnterpriseWifiConfig: true, CertStore: true, SystemEventNotifications: true,
			SoftwareUpdateDeferral: true, HeapMemStats: true,
			DeviceAuthentication: "52fecdd6-5a57-4cd2-bea1-ec7fa1773c43",
			Gpio:                 []Peripheral{{Number: 9, Numeric: true}, {Name: "$SAMPLE_LED"}},
			Uart:                 []string{"ISU3"}, I2cMaster: []string{"ISU2"}, I2cSubordinate: []string{"ISU1"}, SpiMaster: []string{"ISU0"},
			Pwm: []string{"PWM-CONTROLLER-0"}, Adc: []string{"ADC-CONTROLLER-0"}, ExternalInterrupt: []string{"EINT4"},
			MutableStorage: &MutableStorage{SizeKB: 64},
			PowerControls:  []string{"ForcePowerDown", "ForceReboot", "SetPowerProfile"},
			Unknown:        map[string]json.RawMessage{"Tomorrow": json.RawMessage(`{ "x": 1 }`)},
		},
	}
	if diff := cmp.Diff(want, m, cmpopts.IgnoreUnexported(Manifest{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("Parse() mismatch (-want +got):\n%s", diff)
	}
	if p, ok := m.Position("Capabilities.AllowedTcpServerPorts[0]"); !ok || p != (Position{Line: 9, Col: 32}) {
		t.Errorf("Position(AllowedTcpServerPorts[0]) = %v, %v, want 9:32", p, ok)
	}
	if _, ok := m.Position("Capabilities.Nope"); ok {
		t.Errorf("Position(Capabilities.Nope) found a position")
	}

	strict := Strict(m, diags)
	var exts []string
	for _, d := range strict {
		if d.Severity == Error {
			exts = append(exts, d.Path+": "+d.Message)
		}
	}
	wantExts := []string{
		"Capabilities.AllowedConnections[1]: wildcards are a pinhole extension; Azure Sphere accepts only exact host names; ports are a pinhole extension; Azure Sphere entries carry no port",
		"Capabilities.AllowedConnections[3]: IPv6 addresses are a pinhole extension; Azure Sphere is IPv4 only",
	}
	if diff := cmp.Diff(wantExts, exts); diff != "" {
		t.Errorf("Strict() errors mismatch (-want +got):\n%s", diff)
	}
}

func TestStrictPromotesWhatAzureRefuses(t *testing.T) {
	m, diags, err := Parse("snippet.json", []byte(`{ "Capabilities": { "AllowedConnections": [ "example.com:443" ] } }`))
	if err != nil {
		t.Fatal(err)
	}
	if e, w := Count(diags); e != 0 || w != 5 {
		t.Fatalf("Count = %d, %d; want 0 errors, 5 warnings", e, w)
	}
	strict := Strict(m, diags)
	if e, w := Count(strict); e != 6 || w != 0 {
		t.Errorf("Count(Strict) = %d, %d; want 6 errors (5 missing fields, 1 port), 0 warnings: %v", e, w, strict)
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{File: "app_manifest.json", Path: "Capabilities.AllowedConnections[0]", Line: 8, Col: 29, Entry: `"CHANGE THIS"`,
		Severity: Error, Message: "looks like a placeholder left from a sample: put your real host name here",
		Code: CodeConnectionsParse, CodeName: "ConnectionsParseError"}
	want := `app_manifest.json:8:29: error: Capabilities.AllowedConnections[0]: "CHANGE THIS": looks like a placeholder left from a sample: put your real host name here (Azure Sphere error 2097161 ConnectionsParseError)`
	if got := d.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	d = Diagnostic{File: "a.json", Line: 1, Col: 1, Severity: Warning, Message: "hello"}
	if got, want := d.String(), "a.json:1:1: warning: hello"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestColumnsCountCharacters(t *testing.T) {
	src := header + `  "Capabilities": { "AllowedConnections": [ "Bücher.example", "ä b" ] } }`
	_, diags, err := Parse("m.json", []byte(src))
	if err == nil {
		t.Fatal("want an error")
	}
	// Line 8 is `  "Capabilities": { "AllowedConnections": [ "Bücher.example", "ä b" ] } }`:
	// the bad entry starts at character 63 (byte 64, since ü takes two bytes).
	if len(diags) != 1 || diags[0].Line != 8 || diags[0].Col != 63 {
		t.Errorf("diagnostics = %v, want one at 8:63", diags)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(header+`  "Capabilities": { "AllowedConnections": [ "example.com" ] } }`), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _, err := Load(good)
	if err != nil || m.File != good || len(m.Capabilities.AllowedConnections) != 1 {
		t.Fatalf("Load(%s) = %+v, %v", good, m, err)
	}
	if _, _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want one wrapping os.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"Capabilities":{},"x":"`+strings.Repeat("a", MaxSize)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, diags, err := Load(big)
	if err == nil || len(diags) != 1 || !strings.Contains(diags[0].Message, "larger than") {
		t.Errorf("Load(big) = %v, %v; want a size error", diags, err)
	}
}

func TestInvalidErrorListsEveryError(t *testing.T) {
	_, _, err := Parse("x.json", []byte(`{ "Capabilities": { "AllowedConnections": [ "", "CHANGE THIS" ] } }`))
	msg := err.Error()
	for _, want := range []string{"x.json: 2 errors in manifest:", `AllowedConnections[0]: ""`, `AllowedConnections[1]: "CHANGE THIS"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}
