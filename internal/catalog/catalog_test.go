package catalog

import (
	"bufio"
	"errors"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

// requiredParams gives every profile's required parameters a value.
var requiredParams = map[string]map[string]string{
	"azure-iot-hub": {"hub": "contoso-hub"},
}

func TestEmbeddedData(t *testing.T) {
	t.Parallel()
	if _, err := data(); err != nil {
		t.Fatalf("embedded catalog: %v", err)
	}
	if diff := cmp.Diff([]string{"azure-sphere", "azure-iot-hub", "minimal"}, Names()); diff != "" {
		t.Errorf("Names() (-want +got):\n%s", diff)
	}
	for _, name := range Names() {
		p, err := Load(name, requiredParams[name])
		if err != nil {
			t.Fatalf("Load(%q): %v", name, err)
		}
		if p.Description == "" || p.Source == "" || len(p.Endpoints) == 0 {
			t.Errorf("profile %s: description, source or endpoints missing", name)
		}
		dns := false
		for i, e := range p.Endpoints {
			if e.Transport != TCP && e.Transport != UDP {
				t.Errorf("%s endpoint %d: transport %q", name, i, e.Transport)
			}
			if e.Port == 0 {
				t.Errorf("%s endpoint %d: port 0", name, i)
			}
			if e.Protocol == "" || e.Purpose == "" {
				t.Errorf("%s endpoint %d: protocol or purpose empty", name, i)
			}
			switch e.Kind {
			case KindDNSServers:
				dns = true
				if len(e.Hosts)+len(e.Addrs) != 0 || e.Port != 53 {
					t.Errorf("%s endpoint %d: DNS entry %+v", name, i, e)
				}
			case KindHosts:
				if len(e.Hosts)+len(e.Addrs) == 0 {
					t.Errorf("%s endpoint %d: no hosts", name, i)
				}
			default:
				t.Errorf("%s endpoint %d: kind %q", name, i, e.Kind)
			}
			for _, h := range e.Hosts {
				pat, err := hostname.ParsePattern(h)
				if err != nil || pat.Kind != hostname.Exact || pat.Name != h {
					t.Errorf("%s endpoint %d: host %q: pattern %v, err %v", name, i, h, pat, err)
				}
			}
		}
		if !dns {
			t.Errorf("profile %s has no DNS endpoint", name)
		}
	}
}

// TestDefaultsAreReachable checks that a profile's own time servers and
// connectivity check are among its endpoints, so the system identity may
// reach them.
func TestDefaultsAreReachable(t *testing.T) {
	t.Parallel()
	for _, name := range Names() {
		p, err := Load(name, requiredParams[name])
		if err != nil {
			t.Fatal(err)
		}
		has := func(tr Transport, port uint16, dest string) bool {
			for _, e := range p.Endpoints {
				if e.Transport == tr && e.Port == port && contains(e.Destinations(), dest) {
					return true
				}
			}
			return false
		}
		if len(p.NTPServers) == 0 {
			t.Errorf("profile %s: no NTP servers", name)
		}
		for _, s := range p.NTPServers {
			if !has(UDP, 123, s) {
				t.Errorf("profile %s: NTP server %s is not an endpoint", name, s)
			}
		}
		if p.ConnectivityURL != "" {
			_, host, port, err := parseURL(p.ConnectivityURL)
			if err != nil {
				t.Fatal(err)
			}
			if !has(TCP, port, host) {
				t.Errorf("profile %s: connectivity check %s is not an endpoint", name, p.ConnectivityURL)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// seedRow is one row of the table in testdata/seed.txt, the page the
// project started from.
type seedRow struct {
	Protocol string
	Port     uint16
	PortNote string
	Hosts    []string
	Purpose  string
}

var hostToken = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+,?$`)

func readSeedTable(t *testing.T) []seedRow {
	t.Helper()
	f, err := os.Open("testdata/seed.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []seedRow
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "Protocol Port URLs or IP addresses Purpose" {
			in = true
			continue
		}
		if !in {
			continue
		}
		if line == "" {
			break
		}
		tok := strings.Fields(line)
		var r seedRow
		i := 0
		for ; i < len(tok); i++ {
			if n, err := strconv.Atoi(tok[i]); err == nil {
				r.Port = uint16(n)
				break
			}
		}
		r.Protocol = strings.Join(tok[:i], " ")
		i++
		if i < len(tok) && strings.HasPrefix(tok[i], "(") && strings.HasSuffix(tok[i], ")") {
			r.PortNote = strings.Trim(tok[i], "()")
			i++
		}
		for ; i < len(tok) && hostToken.MatchString(tok[i]); i++ {
			r.Hosts = append(r.Hosts, strings.TrimSuffix(tok[i], ","))
			if !strings.HasSuffix(tok[i], ",") {
				i++
				break
			}
		}
		r.Purpose = strings.Join(tok[i:], " ")
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("seed table has %d rows, want 6: %+v", len(rows), rows)
	}
	return rows
}

// TestAzureSphereMatchesSeed pins the azure-sphere profile to the seed's
// table, row by row.
func TestAzureSphereMatchesSeed(t *testing.T) {
	t.Parallel()
	want := readSeedTable(t)
	p, err := Load("azure-sphere", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []seedRow
	for _, e := range p.Endpoints {
		got = append(got, seedRow{Protocol: e.Protocol, Port: e.Port, PortNote: e.PortNote, Hosts: e.Hosts, Purpose: e.Purpose})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("azure-sphere differs from the seed (-seed +catalog):\n%s", diff)
	}
	// What the table's words say beyond the columns.
	for _, e := range p.Endpoints {
		wantTransport := TCP
		if e.Protocol == "UDP" {
			wantTransport = UDP
		}
		if e.Transport != wantTransport {
			t.Errorf("%s %d: transport %s, want %s", e.Protocol, e.Port, e.Transport, wantTransport)
		}
		if (e.Port == 53) != (e.Kind == KindDNSServers) {
			t.Errorf("%s %d: kind %s", e.Protocol, e.Port, e.Kind)
		}
		// "NTP is an optional feature that is enabled by default."
		if (e.Port == 123) != (e.Optional && e.Feature == FeatureTime) {
			t.Errorf("%s %d: optional %v feature %q", e.Protocol, e.Port, e.Optional, e.Feature)
		}
	}
	if diff := cmp.Diff([]string{"prod.time.sphere.azure.net", "time.sphere.azure.net"}, p.NTPServers); diff != "" {
		t.Errorf("NTP servers (-want +got):\n%s", diff)
	}
	if p.ConnectivityURL != "http://www.msftconnecttest.com/connecttest.txt" {
		t.Errorf("ConnectivityURL = %q", p.ConnectivityURL)
	}
}

func TestLoadIoTHub(t *testing.T) {
	t.Parallel()
	p, err := Load("azure-iot-hub", map[string]string{"hub": "Contoso-Hub", "ntp_servers": "time.example.com, 192.0.2.10,2001:db8::123"})
	if err != nil {
		t.Fatal(err)
	}
	hub := []string{"contoso-hub.azure-devices.net"}
	dps := []string{"global.azure-devices-provisioning.net"}
	ntpAddrs := []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::123")}
	type row struct {
		Transport Transport
		Port      uint16
		Kind      Kind
		Hosts     []string
		Addrs     []netip.Addr
		Optional  bool
	}
	want := []row{
		{TCP, 8883, KindHosts, hub, nil, false},
		{TCP, 443, KindHosts, hub, nil, false},
		{TCP, 5671, KindHosts, hub, nil, false},
		{TCP, 8883, KindHosts, dps, nil, false},
		{TCP, 443, KindHosts, dps, nil, false},
		{UDP, 53, KindDNSServers, nil, nil, false},
		{TCP, 53, KindDNSServers, nil, nil, false},
		{UDP, 123, KindHosts, []string{"time.example.com"}, ntpAddrs, true},
	}
	var got []row
	for _, e := range p.Endpoints {
		got = append(got, row{e.Transport, e.Port, e.Kind, e.Hosts, e.Addrs, e.Optional})
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
	wantParams := map[string]string{"hub": "contoso-hub.azure-devices.net", "ntp_servers": "time.example.com,192.0.2.10,2001:db8::123"}
	if diff := cmp.Diff(wantParams, p.Params); diff != "" {
		t.Errorf("Params (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"time.example.com", "192.0.2.10", "2001:db8::123"}, p.NTPServers); diff != "" {
		t.Errorf("NTPServers (-want +got):\n%s", diff)
	}
}

func TestLoadParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		profile string
		params  map[string]string
		// want is a check on the loaded profile: key -> Params value.
		want map[string]string
		// errParam is the parameter a *ParamError must name; errText a
		// part of the message.
		errParam, errText string
		unknown           bool
	}{
		{name: "hub name", profile: "azure-iot-hub", params: map[string]string{"hub": "abc"},
			want: map[string]string{"hub": "abc.azure-devices.net", "ntp_servers": "pool.ntp.org"}},
		{name: "hub full host", profile: "azure-iot-hub", params: map[string]string{"hub": "My-Hub.Azure-Devices.NET."},
			want: map[string]string{"hub": "my-hub.azure-devices.net", "ntp_servers": "pool.ntp.org"}},
		{name: "hub private cloud host", profile: "azure-iot-hub", params: map[string]string{"hub": "hub.azure-devices.cn"},
			want: map[string]string{"hub": "hub.azure-devices.cn", "ntp_servers": "pool.ntp.org"}},
		{name: "hub missing", profile: "azure-iot-hub", errParam: "hub", errText: "required"},
		{name: "hub empty counts as missing", profile: "azure-iot-hub", params: map[string]string{"hub": ""}, errParam: "hub", errText: "required"},
		{name: "hub too short", profile: "azure-iot-hub", params: map[string]string{"hub": "ab"}, errParam: "hub", errText: "3 to 50"},
		{name: "hub underscore", profile: "azure-iot-hub", params: map[string]string{"hub": "my_hub"}, errParam: "hub", errText: "letters, digits"},
		{name: "hub leading hyphen", profile: "azure-iot-hub", params: map[string]string{"hub": "-hub"}, errParam: "hub", errText: "hyphen"},
		{name: "hub wildcard", profile: "azure-iot-hub", params: map[string]string{"hub": "*.azure-devices.net"}, errParam: "hub", errText: "wildcard"},
		{name: "hub url", profile: "azure-iot-hub", params: map[string]string{"hub": "https://x.azure-devices.net"}, errParam: "hub"},
		{name: "param on sphere", profile: "azure-sphere", params: map[string]string{"hub": "abc"}, errParam: "hub", errText: "takes no parameters"},
		{name: "unknown param", profile: "minimal", params: map[string]string{"ntp": "x.example"}, errParam: "ntp", errText: "takes ntp_servers, connectivity_url"},
		{name: "minimal defaults", profile: "minimal",
			want: map[string]string{"ntp_servers": "pool.ntp.org", "connectivity_url": "http://www.msftconnecttest.com/connecttest.txt"}},
		{name: "minimal custom", profile: "minimal",
			params: map[string]string{"ntp_servers": "Time.Example.COM", "connectivity_url": "https://Check.Example.com:8443/ok"},
			want:   map[string]string{"ntp_servers": "time.example.com", "connectivity_url": "https://check.example.com:8443/ok"}},
		{name: "ntp empty entry", profile: "minimal", params: map[string]string{"ntp_servers": "a.example,,b.example"}, errParam: "ntp_servers", errText: "empty entry"},
		{name: "ntp duplicate", profile: "minimal", params: map[string]string{"ntp_servers": "a.example,A.example"}, errParam: "ntp_servers", errText: "twice"},
		{name: "ntp bad host", profile: "minimal", params: map[string]string{"ntp_servers": "bad host"}, errParam: "ntp_servers"},
		{name: "ntp multicast", profile: "minimal", params: map[string]string{"ntp_servers": "224.0.1.1"}, errParam: "ntp_servers", errText: "unicast"},
		{name: "url scheme", profile: "minimal", params: map[string]string{"connectivity_url": "ftp://a.example/"}, errParam: "connectivity_url", errText: "http or https"},
		{name: "url no host", profile: "minimal", params: map[string]string{"connectivity_url": "http:///x"}, errParam: "connectivity_url", errText: "no host"},
		{name: "url user", profile: "minimal", params: map[string]string{"connectivity_url": "http://u:p@a.example/"}, errParam: "connectivity_url", errText: "user"},
		{name: "url port", profile: "minimal", params: map[string]string{"connectivity_url": "http://a.example:0/"}, errParam: "connectivity_url", errText: "port"},
		{name: "unknown profile", profile: "azure", unknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Load(tt.profile, tt.params)
			switch {
			case tt.unknown:
				if !errors.Is(err, ErrUnknownProfile) {
					t.Fatalf("Load(%q) error = %v, want ErrUnknownProfile", tt.profile, err)
				}
				return
			case tt.errParam != "":
				var pe *ParamError
				if !errors.As(err, &pe) {
					t.Fatalf("Load(%q, %v) error = %v, want a *ParamError", tt.profile, tt.params, err)
				}
				if pe.Param != tt.errParam || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Load(%q, %v) error = %q (param %q), want param %q and %q", tt.profile, tt.params, err, pe.Param, tt.errParam, tt.errText)
				}
				t.Logf("err: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Load(%q, %v): %v", tt.profile, tt.params, err)
			}
			if diff := cmp.Diff(tt.want, p.Params); diff != "" {
				t.Errorf("Params (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConnectivityEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url   string
		want  Endpoint
		wantU string
	}{
		{
			url:   "",
			wantU: "http://www.msftconnecttest.com/connecttest.txt",
			want:  Endpoint{Protocol: "HTTP over TCP", Transport: TCP, Port: 80, Kind: KindHosts, Hosts: []string{"www.msftconnecttest.com"}, Purpose: "Internet connection check"},
		},
		{
			url:   "https://check.example.net/generate_204",
			wantU: "https://check.example.net/generate_204",
			want:  Endpoint{Protocol: "HTTPS over TCP", Transport: TCP, Port: 443, Kind: KindHosts, Hosts: []string{"check.example.net"}, Purpose: "Internet connection check"},
		},
		{
			url:   "http://[2001:db8::1]:8080/",
			wantU: "http://[2001:db8::1]:8080/",
			want:  Endpoint{Protocol: "HTTP over TCP", Transport: TCP, Port: 8080, Kind: KindHosts, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, Purpose: "Internet connection check"},
		},
	}
	for _, tt := range tests {
		p, err := Load("minimal", map[string]string{"connectivity_url": tt.url})
		if err != nil {
			t.Fatalf("Load(minimal, %q): %v", tt.url, err)
		}
		last := p.Endpoints[len(p.Endpoints)-1]
		if diff := cmp.Diff(tt.want, last, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("url %q: endpoint (-want +got):\n%s", tt.url, diff)
		}
		if p.ConnectivityURL != tt.wantU {
			t.Errorf("url %q: ConnectivityURL = %q, want %q", tt.url, p.ConnectivityURL, tt.wantU)
		}
	}
}

func TestParams(t *testing.T) {
	t.Parallel()
	ps, err := Params("azure-iot-hub")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
		if p.Description == "" {
			t.Errorf("parameter %s has no description", p.Name)
		}
	}
	if diff := cmp.Diff([]string{"hub", "ntp_servers"}, names); diff != "" {
		t.Errorf("Params(azure-iot-hub) (-want +got):\n%s", diff)
	}
	if !ps[0].Required {
		t.Error("hub is not required")
	}
	if _, err := Params("nope"); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("Params(nope) error = %v", err)
	}
}

// TestLoadReturnsCopies checks that changing a loaded profile does not
// change the next one.
func TestLoadReturnsCopies(t *testing.T) {
	t.Parallel()
	a, _ := Load("azure-sphere", nil)
	a.Endpoints[0].Hosts[0] = "evil.example"
	a.NTPServers[0] = "evil.example"
	b, _ := Load("azure-sphere", nil)
	if b.Endpoints[0].Hosts[0] != "global.azure-devices-provisioning.net" || b.NTPServers[0] != "prod.time.sphere.azure.net" {
		t.Fatal("Load shares slices between calls")
	}
}

// TestValidateRejects checks that bad catalog data is caught.
func TestValidateRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"unknown key":              "profiles:\n- name: a\n  colour: red\n",
		"port 0":                   "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 0, hosts: [a.example], purpose: x}\n",
		"port too big":             "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 70000, hosts: [a.example], purpose: x}\n",
		"bad transport":            "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: sctp, port: 1, hosts: [a.example], purpose: x}\n",
		"bad host":                 "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: [a..example], purpose: x}\n",
		"upper host":               "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: [A.example], purpose: x}\n",
		"wildcard host":            "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: ['*.a.example'], purpose: x}\n",
		"no hosts":                 "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, purpose: x}\n",
		"dns hosts":                "profiles:\n- name: a\n  endpoints:\n  - {protocol: UDP, transport: udp, port: 53, kind: dns-servers, hosts: [a.example], purpose: x}\n",
		"no purpose":               "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: [a.example]}\n",
		"unknown ref":              "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: ['{hub}'], purpose: x}\n",
		"optional ref":             "profiles:\n- name: a\n  params: [{name: h, kind: hosts}]\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: ['{h}'], purpose: x}\n",
		"dup profile":              "profiles:\n- name: a\n- name: a\n",
		"optional without feature": "profiles:\n- name: a\n  endpoints:\n  - {protocol: TCP, transport: tcp, port: 1, hosts: [a.example], purpose: x, optional: true}\n",
	}
	for name, in := range tests {
		if _, err := parseData([]byte(in)); err == nil {
			t.Errorf("%s: parseData accepted %q", name, in)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(uint8(1), "contoso-hub", "pool.ntp.org", "")
	f.Add(uint8(2), "", "a.example,192.0.2.1", "https://[::1]:99/x")
	f.Add(uint8(2), "", " ,", "http://a.example:65536")
	f.Fuzz(func(t *testing.T, idx uint8, hub, ntp, url string) {
		names := Names()
		name := names[int(idx)%len(names)]
		params := map[string]string{}
		for _, pr := range [][2]string{{"hub", hub}, {"ntp_servers", ntp}, {"connectivity_url", url}} {
			if pr[1] != "" {
				params[pr[0]] = pr[1]
			}
		}
		p, err := Load(name, params)
		if err != nil {
			return
		}
		// Whatever loads must be valid: plain normalised host names, and
		// the same profile again from its own effective parameters.
		for _, e := range p.Endpoints {
			for _, h := range e.Hosts {
				if pat, err := hostname.ParsePattern(h); err != nil || pat.Kind != hostname.Exact || pat.Name != h {
					t.Fatalf("host %q from params %v: %v %v", h, params, pat, err)
				}
			}
		}
		again, err := Load(name, p.Params)
		if err != nil {
			t.Fatalf("reload with %v: %v", p.Params, err)
		}
		if diff := cmp.Diff(p, again, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("reload differs (-first +again):\n%s", diff)
		}
	})
}
