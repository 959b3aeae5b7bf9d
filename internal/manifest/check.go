package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// checker walks the JSON tree once, fills a Manifest and collects every
// diagnostic on the way.
type checker struct {
	file      string
	data      []byte
	lines     *lineIndex
	diags     []Diagnostic
	positions map[string]Position
}

func newChecker(file string, data []byte) *checker {
	return &checker{file: file, data: data, lines: newLineIndex(data), positions: make(map[string]Position)}
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

func (c *checker) check() *Manifest {
	data := c.data
	if len(data) > MaxSize {
		c.report(Error, "", 0, nil, CodeJSONParse, fmt.Sprintf("file is larger than %d bytes; this is not a manifest", MaxSize))
		return nil
	}
	if bytes.HasPrefix(data, utf8BOM) {
		// Windows editors write a byte order mark; blank it so offsets stay.
		data = append([]byte("   "), data[len(utf8BOM):]...)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		c.report(Error, "", 0, nil, CodeJSONParse, "file is empty; a manifest is a JSON object")
		return nil
	}
	root, err := parseJSON(data)
	if err != nil {
		off := 0
		var pe *posError
		if errors.As(err, &pe) {
			off = pe.off
		}
		c.report(Error, "", off, nil, CodeJSONParse, err.Error())
		return nil
	}
	if root.kind != kindObject {
		c.report(Error, "", root.off, root, CodeJSONParse, "the manifest must be a JSON object, not "+root.kind.String())
		return nil
	}
	c.recordPositions(root, "")
	m := &Manifest{File: c.file, positions: c.positions}
	seen := make(map[string]bool)
	for _, mb := range c.members(root, "") {
		seen[mb.key] = true
		path, v := joinPath("", mb.key), mb.val
		switch mb.key {
		case "SchemaVersion":
			c.schemaVersion(m, path, v)
		case "Name":
			if s, ok := c.wantString(path, v, 0); ok {
				m.Name = s
			}
		case "ComponentId":
			if s, ok := c.wantString(path, v, CodeInvalidComponentID); ok {
				if !isGUID(s) {
					c.report(Error, path, v.off, v, CodeInvalidComponentID, "is not a GUID such as 1689d8b2-c835-2e27-27ad-e894d6d15fa9")
				} else {
					m.ComponentID = s
				}
			}
		case "EntryPoint":
			if s, ok := c.wantString(path, v, CodeEntryPointParse); ok {
				if s == "" {
					c.report(Error, path, v.off, v, CodeEntryPointParse, "is empty; it names the app's executable, such as \"/bin/app\"")
				} else {
					m.EntryPoint = s
				}
			}
		case "CmdArgs":
			if l, ok := c.stringList(path, v, CodeMissingCmdArgs, false); ok {
				m.CmdArgs = l
			}
		case "ApplicationType":
			if s, ok := c.wantString(path, v, CodeApplicationType); ok {
				if s != AppTypeDefault && s != AppTypeRealTimeCapable {
					c.report(Error, path, v.off, v, CodeApplicationType, fmt.Sprintf("unknown application type; Azure Sphere knows %q and %q", AppTypeDefault, AppTypeRealTimeCapable))
				} else {
					m.ApplicationType = s
				}
			}
		case "MallocVersion":
			if n, ok := c.wantInt(path, v, CodeMallocVersionParse); ok {
				if n < 1 {
					c.report(Error, path, v.off, v, CodeMallocVersionParse, "must be a positive integer")
				} else {
					m.MallocVersion = int(n)
				}
			}
		case "Capabilities":
			if v.kind != kindObject {
				c.report(Error, path, v.off, v, CodeMissingCapabilities, "must be an object, not "+v.kind.String())
				break
			}
			c.capabilities(&m.Capabilities, path, v)
		default:
			if m.Unknown == nil {
				m.Unknown = make(map[string]json.RawMessage)
			}
			c.unknownKey(m.Unknown, topLevelKeys, "field", path, mb)
		}
	}

	// Missing fields. Code snippets and real-time apps published by Microsoft
	// omit some of what Azure Sphere requires; pinhole reads only the
	// Capabilities, so those are warnings that lint --strict turns into errors.
	missing := func(key string, code AzureCode, why string) {
		if !seen[key] {
			c.add(Diagnostic{Path: key, Severity: Warning, Message: "missing; " + why, Code: code, AzureRefuses: true}, root.off, nil)
		}
	}
	if !seen["Capabilities"] {
		c.report(Error, "Capabilities", root.off, nil, CodeMissingCapabilities, "missing; every manifest needs a Capabilities object (an empty one allows nothing)")
	}
	missing("SchemaVersion", CodeMissingSchemaVersion, "Azure Sphere requires \"SchemaVersion\": 1")
	missing("Name", 0, "Azure Sphere requires the app's name")
	missing("ComponentId", 0, "Azure Sphere requires the app's component GUID")
	missing("EntryPoint", CodeMissingEntryPoint, "Azure Sphere requires the path of the app's executable")
	if m.ApplicationType != AppTypeRealTimeCapable {
		// Microsoft's real-time samples have no CmdArgs and load.
		missing("CmdArgs", CodeMissingCmdArgs, "Azure Sphere requires a CmdArgs array (it may be empty) for high-level apps")
	}
	return m
}

func (c *checker) schemaVersion(m *Manifest, path string, v *value) {
	if v.kind != kindNumber {
		c.report(Error, path, v.off, v, CodeSchemaVersion, "must be the number 1, not "+v.kind.String())
		return
	}
	if v.text != "1" {
		msg := "is not compatible; the only schema version is 1"
		if f, err := strconv.ParseFloat(v.text, 64); err == nil && f == 1 {
			msg = "must be written as the whole number 1"
		}
		c.report(Error, path, v.off, v, CodeSchemaVersion, msg)
		return
	}
	m.SchemaVersion = 1
}

// boolCaps are the capabilities that are plain switches, with the code
// Azure Sphere reports when one is not a boolean.
var boolCaps = map[string]struct {
	code  AzureCode
	field func(*Capabilities) *bool
}{
	"NetworkConfig":            {CodeNetworkConfigParse, func(c *Capabilities) *bool { return &c.NetworkConfig }},
	"ReadNetworkProxyConfig":   {CodeReadNetworkProxyConfigParse, func(c *Capabilities) *bool { return &c.ReadNetworkProxyConfig }},
	"TimeSyncConfig":           {CodeTimeSyncConfigParse, func(c *Capabilities) *bool { return &c.TimeSyncConfig }},
	"SystemTime":               {CodeSystemTimeParse, func(c *Capabilities) *bool { return &c.SystemTime }},
	"SntpService":              {CodeSntpServiceParse, func(c *Capabilities) *bool { return &c.SntpService }},
	"DhcpService":              {CodeDhcpServiceParse, func(c *Capabilities) *bool { return &c.DhcpService }},
	"HardwareAddressConfig":    {CodeHardwareAddressConfigParse, func(c *Capabilities) *bool { return &c.HardwareAddressConfig }},
	"WifiConfig":               {CodeWifiConfigParse, func(c *Capabilities) *bool { return &c.WifiConfig }},
	"EnterpriseWifiConfig":     {CodeEnterpriseWifiConfigParse, func(c *Capabilities) *bool { return &c.EnterpriseWifiConfig }},
	"CertStore":                {CodeCertStoreParse, func(c *Capabilities) *bool { return &c.CertStore }},
	"SystemEventNotifications": {CodeSystemEventNotificationParse, func(c *Capabilities) *bool { return &c.SystemEventNotifications }},
	"SoftwareUpdateDeferral":   {CodeSoftwareUpdateDeferralParse, func(c *Capabilities) *bool { return &c.SoftwareUpdateDeferral }},
	"HeapMemStats":             {0, func(c *Capabilities) *bool { return &c.HeapMemStats }},
}

// peripheralCaps are lists of peripheral names.
var peripheralCaps = map[string]func(*Capabilities) *[]string{
	"Uart":              func(c *Capabilities) *[]string { return &c.Uart },
	"I2cMaster":         func(c *Capabilities) *[]string { return &c.I2cMaster },
	"I2cSubordinate":    func(c *Capabilities) *[]string { return &c.I2cSubordinate },
	"SpiMaster":         func(c *Capabilities) *[]string { return &c.SpiMaster },
	"Pwm":               func(c *Capabilities) *[]string { return &c.Pwm },
	"Adc":               func(c *Capabilities) *[]string { return &c.Adc },
	"ExternalInterrupt": func(c *Capabilities) *[]string { return &c.ExternalInterrupt },
}

var topLevelKeys = []string{"SchemaVersion", "Name", "ComponentId", "EntryPoint", "CmdArgs", "Capabilities", "ApplicationType", "MallocVersion"}

var capabilityKeys = func() []string {
	keys := []string{"AllowedConnections", "AllowedTcpServerPorts", "AllowedUdpServerPorts", "AllowedApplicationConnections",
		"DeviceAuthentication", "Gpio", "MutableStorage", "PowerControls"}
	for k := range boolCaps {
		keys = append(keys, k)
	}
	for k := range peripheralCaps {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}()

var powerControls = []string{"ForcePowerDown", "ForceReboot", "SetPowerProfile"}

func (c *checker) capabilities(caps *Capabilities, base string, obj *value) {
	for _, mb := range c.members(obj, base) {
		path, v := joinPath(base, mb.key), mb.val
		if bc, ok := boolCaps[mb.key]; ok {
			if b, ok := c.wantBool(path, v, bc.code); ok {
				*bc.field(caps) = b
			}
			continue
		}
		if field, ok := peripheralCaps[mb.key]; ok {
			if l, ok := c.stringList(path, v, CodePeripheralParse, true); ok {
				*field(caps) = l
			}
			continue
		}
		switch mb.key {
		case "AllowedConnections":
			c.allowedConnections(caps, path, v)
		case "AllowedTcpServerPorts":
			caps.AllowedTCPServerPorts = c.ports(path, v, CodeTCPPortsParse, CodeTCPPortsValue)
		case "AllowedUdpServerPorts":
			caps.AllowedUDPServerPorts = c.ports(path, v, CodeUDPPortsParse, CodeUDPPortsValue)
		case "AllowedApplicationConnections":
			if l, ok := c.stringList(path, v, CodeAppConnectionsParse, true); ok {
				bad := false
				for i, s := range l {
					if !isGUID(s) {
						el := v.elems[i]
						c.report(Error, indexPath(path, i), el.off, el, CodeAppConnectionsParse, "is not a component GUID such as 005180bc-402f-4cb3-a662-72937dbcde47")
						bad = true
					}
				}
				if !bad {
					caps.AllowedApplicationConnections = l
				}
			}
		case "DeviceAuthentication":
			c.deviceAuthentication(caps, path, v)
		case "Gpio":
			c.gpio(caps, path, v)
		case "MutableStorage":
			c.mutableStorage(caps, path, v)
		case "PowerControls":
			c.powerControls(caps, path, v)
		default:
			if caps.Unknown == nil {
				caps.Unknown = make(map[string]json.RawMessage)
			}
			c.unknownKey(caps.Unknown, capabilityKeys, "capability", path, mb)
		}
	}
}

func (c *checker) allowedConnections(caps *Capabilities, path string, v *value) {
	code := CodeConnectionsParse
	if v.kind != kindArray {
		c.report(Error, path, v.off, v, code, "must be an array of host names and IPv4 addresses, not "+v.kind.String())
		return
	}
	conns := make([]Connection, 0, len(v.elems))
	first := make(map[string]string) // canonical entry -> path of its first use
	bad := false
	for i, el := range v.elems {
		ep := indexPath(path, i)
		if el.kind != kindString {
			c.report(Error, ep, el.off, el, code, "must be a string (a host name or an IPv4 address), not "+el.kind.String())
			bad = true
			continue
		}
		conn, err := ParseEntry(el.text)
		if err != nil {
			c.report(Error, ep, el.off, el, code, err.Error())
			bad = true
			continue
		}
		pos := c.lines.position(el.off)
		conn.Path, conn.Line, conn.Col = ep, pos.Line, pos.Col
		key := conn.String()
		if prev, dup := first[key]; dup {
			c.report(Warning, ep, el.off, el, 0, fmt.Sprintf("duplicate of %s (both are %q)", prev, key))
		} else {
			first[key] = ep
		}
		switch {
		case conn.IsAddr() && conn.Addr.IsLoopback():
			c.report(Warning, ep, el.off, el, 0, "loopback is always reachable (pinhole never filters it); the entry has no effect")
		case conn.Kind == ConnHost || conn.Kind == ConnWildcard:
			if l := sampleLabel(conn.Pattern.Name); l != "" {
				c.report(Warning, ep, el.off, el, 0, fmt.Sprintf("label %q looks like a placeholder left from a sample: put your real host name here", l))
			}
		}
		conns = append(conns, conn)
	}
	if !bad {
		caps.AllowedConnections = conns
	}
}

// ports reads a server port list: integers in 1..65535.
func (c *checker) ports(path string, v *value, parseCode, valueCode AzureCode) []uint16 {
	if v.kind != kindArray {
		c.report(Error, path, v.off, v, parseCode, "must be an array of port numbers, not "+v.kind.String())
		return nil
	}
	out := make([]uint16, 0, len(v.elems))
	first := make(map[uint16]string)
	bad := false
	for i, el := range v.elems {
		ep := indexPath(path, i)
		if el.kind != kindNumber {
			msg := "must be a port number, not " + el.kind.String()
			if el.kind == kindString {
				msg += " (write it without quotes)"
			}
			c.report(Error, ep, el.off, el, parseCode, msg)
			bad = true
			continue
		}
		if !isInteger(el.text) {
			c.report(Error, ep, el.off, el, parseCode, "must be a whole number")
			bad = true
			continue
		}
		n, err := strconv.ParseInt(el.text, 10, 64)
		if err != nil || n < 1 || n > 65535 {
			c.report(Error, ep, el.off, el, valueCode, "is outside the port range 1..65535")
			bad = true
			continue
		}
		p := uint16(n)
		if prev, dup := first[p]; dup {
			c.report(Warning, ep, el.off, el, 0, fmt.Sprintf("duplicate of %s", prev))
			continue
		}
		first[p] = ep
		out = append(out, p)
	}
	if bad {
		return nil
	}
	return out
}

func (c *checker) deviceAuthentication(caps *Capabilities, path string, v *value) {
	s, ok := c.wantString(path, v, CodeDeviceAuthenticationParse)
	if !ok {
		return
	}
	switch {
	case isPlaceholder(s):
		c.report(Error, path, v.off, v, CodeDeviceAuthenticationParse, "looks like a placeholder left from a sample: put your Azure Sphere tenant ID here")
	case len(s) > 36:
		c.report(Error, path, v.off, v, CodeDeviceAuthenticationTooLong, "is too long; it is a tenant GUID of 36 characters")
	case !isGUID(s):
		c.report(Error, path, v.off, v, CodeDeviceAuthenticationParse, "is not a tenant GUID such as 52fecdd6-5a57-4cd2-bea1-ec7fa1773c43")
	default:
		if strings.Trim(s, "0-") == "" {
			c.report(Warning, path, v.off, v, 0, "is the all-zero GUID from the samples; device-authenticated TLS needs your tenant ID")
		}
		caps.DeviceAuthentication = s
	}
}

func (c *checker) gpio(caps *Capabilities, path string, v *value) {
	code := CodeGpioParse
	if v.kind != kindArray {
		c.report(Error, path, v.off, v, code, "must be an array of GPIO numbers or names, not "+v.kind.String())
		return
	}
	out := make([]Peripheral, 0, len(v.elems))
	bad := false
	for i, el := range v.elems {
		ep := indexPath(path, i)
		switch el.kind {
		case kindString:
			if el.text == "" {
				c.report(Error, ep, el.off, el, code, "is empty; name a GPIO")
				bad = true
				continue
			}
			out = append(out, Peripheral{Name: el.text})
		case kindNumber:
			n, err := strconv.ParseInt(el.text, 10, 32)
			if !isInteger(el.text) || err != nil || n < 0 {
				c.report(Error, ep, el.off, el, code, "must be a GPIO number (0 or more)")
				bad = true
				continue
			}
			out = append(out, Peripheral{Number: int(n), Numeric: true})
		default:
			c.report(Error, ep, el.off, el, code, "must be a GPIO number or name, not "+el.kind.String())
			bad = true
		}
	}
	if !bad {
		caps.Gpio = out
	}
}

func (c *checker) mutableStorage(caps *Capabilities, path string, v *value) {
	if v.kind != kindObject {
		c.report(Error, path, v.off, v, CodeMutableStorageNotObject, "must be an object such as { \"SizeKB\": 8 }, not "+v.kind.String())
		return
	}
	ms := &MutableStorage{}
	ok, hasSize := true, false
	for _, mb := range c.members(v, path) {
		mp := joinPath(path, mb.key)
		switch mb.key {
		case "SizeKB":
			hasSize = true
			n, good := c.wantInt(mp, mb.val, CodeMutableStorageParse)
			switch {
			case !good:
				ok = false
			case n < 1 || n > 1<<31-1:
				c.report(Error, mp, mb.val.off, mb.val, CodeMutableStorageParse, "must be a positive number of KiB")
				ok = false
			default:
				ms.SizeKB = int(n)
			}
		default:
			c.report(Warning, mp, mb.keyOff, mb.val, 0, "unknown MutableStorage field; ignored")
		}
	}
	if !hasSize {
		c.report(Error, path, v.off, v, CodeMutableStorageNoSize, "must have a SizeKB field")
		ok = false
	}
	if ok {
		caps.MutableStorage = ms
	}
}

func (c *checker) powerControls(caps *Capabilities, path string, v *value) {
	l, ok := c.stringList(path, v, CodePowerControlsParse, false)
	if !ok {
		return
	}
	if len(l) == 0 {
		c.report(Error, path, v.off, v, CodePowerControlsEmpty, "is empty; leave it out instead")
		return
	}
	seen := make(map[string]bool)
	bad := false
	for i, s := range l {
		el := v.elems[i]
		switch {
		case !slices.Contains(powerControls, s):
			c.report(Error, indexPath(path, i), el.off, el, CodePowerControlsValue, "unknown power control; Azure Sphere knows "+strings.Join(powerControls, ", "))
			bad = true
		case seen[s]:
			c.report(Error, indexPath(path, i), el.off, el, CodePowerControlsParse, "listed twice")
			bad = true
		}
		seen[s] = true
	}
	if !bad {
		caps.PowerControls = l
	}
}

// unknownKey keeps an unknown key as raw JSON with a warning, unless it
// differs from a known key only in case, which is an error: Azure Sphere
// keys are case-sensitive, and the app would silently lose the field.
func (c *checker) unknownKey(dst map[string]json.RawMessage, known []string, what, path string, mb member) {
	for _, k := range known {
		if strings.EqualFold(k, mb.key) {
			c.report(Error, path, mb.keyOff, nil, 0, fmt.Sprintf("%s names are case-sensitive: write %q", what, k))
			return
		}
	}
	c.report(Warning, path, mb.keyOff, nil, 0, fmt.Sprintf("unknown %s %q; kept, but pinhole does not use it", what, mb.key))
	dst[mb.key] = json.RawMessage(bytes.Clone(c.data[mb.val.off:mb.val.end]))
}

// members returns an object's members with duplicate keys folded to the
// last value, as encoding/json does. A repeated key with the same value is a
// warning; with a different value it is an error, since JSON parsers
// disagree on which one counts.
func (c *checker) members(obj *value, path string) []member {
	out := make([]member, 0, len(obj.members))
	index := make(map[string]int, len(obj.members))
	for _, mb := range obj.members {
		i, dup := index[mb.key]
		if !dup {
			index[mb.key] = len(out)
			out = append(out, mb)
			continue
		}
		prev := out[i]
		pp := c.lines.position(prev.keyOff)
		kp := joinPath(path, mb.key)
		if c.sameJSON(prev.val, mb.val) {
			c.report(Warning, kp, mb.keyOff, nil, 0, fmt.Sprintf("key repeated (first at line %d:%d) with the same value; remove one", pp.Line, pp.Col))
		} else {
			c.report(Error, kp, mb.keyOff, nil, 0, fmt.Sprintf("key repeated (first at line %d:%d) with a different value; parsers disagree on which one counts, so keep only one", pp.Line, pp.Col))
		}
		out[i] = mb
	}
	return out
}

func (c *checker) sameJSON(a, b *value) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, c.data[a.off:a.end]) != nil || json.Compact(&y, c.data[b.off:b.end]) != nil {
		return false
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}

func (c *checker) wantBool(path string, v *value, code AzureCode) (bool, bool) {
	if v.kind != kindBool {
		c.report(Error, path, v.off, v, code, "must be true or false, not "+v.kind.String())
		return false, false
	}
	return v.b, true
}

func (c *checker) wantString(path string, v *value, code AzureCode) (string, bool) {
	if v.kind != kindString {
		c.report(Error, path, v.off, v, code, "must be a string, not "+v.kind.String())
		return "", false
	}
	return v.text, true
}

func (c *checker) wantInt(path string, v *value, code AzureCode) (int64, bool) {
	if v.kind != kindNumber || !isInteger(v.text) {
		what := v.kind.String()
		if v.kind == kindNumber {
			what = "a fraction"
		}
		c.report(Error, path, v.off, v, code, "must be a whole number, not "+what)
		return 0, false
	}
	n, err := strconv.ParseInt(v.text, 10, 64)
	if err != nil {
		c.report(Error, path, v.off, v, code, "is too large")
		return 0, false
	}
	return n, true
}

// stringList reads an array of strings, reporting every bad element.
func (c *checker) stringList(path string, v *value, code AzureCode, nonEmpty bool) ([]string, bool) {
	if v.kind != kindArray {
		c.report(Error, path, v.off, v, code, "must be an array of strings, not "+v.kind.String())
		return nil, false
	}
	out := make([]string, 0, len(v.elems))
	ok := true
	for i, el := range v.elems {
		switch {
		case el.kind != kindString:
			c.report(Error, indexPath(path, i), el.off, el, code, "must be a string, not "+el.kind.String())
			ok = false
		case nonEmpty && el.text == "":
			c.report(Error, indexPath(path, i), el.off, el, code, "is empty")
			ok = false
		default:
			out = append(out, el.text)
		}
	}
	return out, ok
}

// recordPositions remembers where every value is, by JSON path.
func (c *checker) recordPositions(v *value, path string) {
	if path != "" {
		c.positions[path] = c.lines.position(v.off)
	}
	switch v.kind {
	case kindObject:
		for _, mb := range v.members {
			c.recordPositions(mb.val, joinPath(path, mb.key))
		}
	case kindArray:
		for i, el := range v.elems {
			c.recordPositions(el, indexPath(path, i))
		}
	}
}

func (c *checker) report(sev Severity, path string, off int, entry *value, code AzureCode, msg string) {
	c.add(Diagnostic{Path: path, Severity: sev, Message: msg, Code: code}, off, entry)
}

func (c *checker) add(d Diagnostic, off int, entry *value) {
	pos := c.lines.position(off)
	d.File, d.Line, d.Col = c.file, pos.Line, pos.Col
	if entry != nil {
		d.Entry = c.entryText(entry)
	}
	d.CodeName = d.Code.Name()
	c.diags = append(c.diags, d)
}

// entryText is the value as written, on one line and shortened.
func (c *checker) entryText(v *value) string {
	raw := c.data[v.off:v.end]
	if v.kind == kindObject || v.kind == kindArray {
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil {
			raw = b.Bytes()
		}
	}
	return shortenEntry(string(raw))
}

func (c *checker) sorted() []Diagnostic {
	out := slices.Clone(c.diags)
	sortDiagnostics(out)
	return out
}

func sortDiagnostics(ds []Diagnostic) {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
}

const maxEntryRunes = 80

func shortenEntry(s string) string {
	if utf8.RuneCountInString(s) <= maxEntryRunes {
		return s
	}
	r := []rune(s)
	return string(r[:maxEntryRunes-3]) + "..."
}

// joinPath appends an object key to a JSON path, quoting keys that are
// not plain identifiers.
func joinPath(base, key string) string {
	plain := key != ""
	for i := 0; i < len(key); i++ {
		ch := key[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return base + "[" + strconv.Quote(key) + "]"
	case base == "":
		return key
	}
	return base + "." + key
}

func indexPath(base string, i int) string { return base + "[" + strconv.Itoa(i) + "]" }

// isInteger reports whether a JSON number is written without fraction or
// exponent.
func isInteger(num string) bool {
	return num != "" && !strings.ContainsAny(num, ".eE")
}

// isGUID reports whether s has the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
// in hex digits, either case.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch i {
		case 8, 13, 18, 23:
			if ch != '-' {
				return false
			}
		default:
			if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F') {
				return false
			}
		}
	}
	return true
}
