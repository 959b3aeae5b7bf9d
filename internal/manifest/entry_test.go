package manifest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pinhole-net/pinhole/internal/hostname"
)

func TestParseEntryAccepts(t *testing.T) {
	host := func(k hostname.Kind, name string) hostname.Pattern { return hostname.Pattern{Kind: k, Name: name} }
	tests := []struct {
		in        string
		kind      ConnKind
		pattern   hostname.Pattern
		addr      string
		port      uint16
		canonical string
		extension bool
	}{
		{in: "example.com", kind: ConnHost, pattern: host(hostname.Exact, "example.com"), canonical: "example.com"},
		{in: "Contoso.COM", kind: ConnHost, pattern: host(hostname.Exact, "contoso.com"), canonical: "contoso.com"},
		{in: "example.com.", kind: ConnHost, pattern: host(hostname.Exact, "example.com"), canonical: "example.com"},
		{in: "Bücher.example", kind: ConnHost, pattern: host(hostname.Exact, "xn--bcher-kva.example"), canonical: "xn--bcher-kva.example"},
		{in: "printer", kind: ConnHost, pattern: host(hostname.Exact, "printer"), canonical: "printer"},
		{in: "17853.live.streamtheworld.com", kind: ConnHost, pattern: host(hostname.Exact, "17853.live.streamtheworld.com"), canonical: "17853.live.streamtheworld.com"},
		{in: "_sample-service._tcp.local", kind: ConnService, pattern: host(hostname.Service, "_sample-service._tcp.local"), canonical: "_sample-service._tcp.local"},
		{in: "_http._tcp.home", kind: ConnService, pattern: host(hostname.Service, "_http._tcp.home"), canonical: "_http._tcp.home"},
		{in: "*.example.com", kind: ConnWildcard, pattern: host(hostname.Wildcard, "example.com"), canonical: "*.example.com", extension: true},
		{in: "*.Azure-Devices.net.", kind: ConnWildcard, pattern: host(hostname.Wildcard, "azure-devices.net"), canonical: "*.azure-devices.net", extension: true},
		{in: "192.168.0.107", kind: ConnIPv4, addr: "192.168.0.107", canonical: "192.168.0.107"},
		{in: "255.255.255.255", kind: ConnIPv4, addr: "255.255.255.255", canonical: "255.255.255.255"},
		{in: "51.140.152.91", kind: ConnIPv4, addr: "51.140.152.91", canonical: "51.140.152.91"},
		{in: "224.0.0.251", kind: ConnIPv4, addr: "224.0.0.251", canonical: "224.0.0.251"},
		{in: "2001:db8::1", kind: ConnIPv6, addr: "2001:db8::1", canonical: "2001:db8::1", extension: true},
		{in: "2001:DB8:0:0::1", kind: ConnIPv6, addr: "2001:db8::1", canonical: "2001:db8::1", extension: true},
		{in: "[2001:db8::1]", kind: ConnIPv6, addr: "2001:db8::1", canonical: "2001:db8::1", extension: true},
		{in: "[2001:db8::1]:8883", kind: ConnIPv6, addr: "2001:db8::1", port: 8883, canonical: "[2001:db8::1]:8883", extension: true},
		{in: "example.com:443", kind: ConnHost, pattern: host(hostname.Exact, "example.com"), port: 443, canonical: "example.com:443", extension: true},
		{in: "*.example.com:8883", kind: ConnWildcard, pattern: host(hostname.Wildcard, "example.com"), port: 8883, canonical: "*.example.com:8883", extension: true},
		{in: "192.0.2.1:65535", kind: ConnIPv4, addr: "192.0.2.1", port: 65535, canonical: "192.0.2.1:65535", extension: true},
		{in: "192.0.2.1:1", kind: ConnIPv4, addr: "192.0.2.1", port: 1, canonical: "192.0.2.1:1", extension: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEntry(tt.in)
			if err != nil {
				t.Fatalf("ParseEntry(%q) = error %v, want it accepted", tt.in, err)
			}
			want := Connection{Raw: tt.in, Kind: tt.kind, Pattern: tt.pattern, Port: tt.port}
			if tt.addr != "" {
				want.Addr = netip.MustParseAddr(tt.addr)
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("ParseEntry(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if s := got.String(); s != tt.canonical {
				t.Errorf("String() = %q, want %q", s, tt.canonical)
			}
			why, ext := got.Extension()
			if ext != tt.extension || (ext && why == "") {
				t.Errorf("Extension() = %q, %v, want extension %v", why, ext, tt.extension)
			}
			// The canonical form is accepted again and means the same.
			again, err := ParseEntry(got.String())
			if err != nil {
				t.Fatalf("ParseEntry(String() %q) = %v", got.String(), err)
			}
			again.Raw = got.Raw
			if again != got {
				t.Errorf("ParseEntry(String()) = %+v, want %+v", again, got)
			}
		})
	}
}

func TestParseEntryRefuses(t *testing.T) {
	const placeholder = "looks like a placeholder left from a sample: put your real host name here"
	tests := []struct {
		in   string
		want string // the whole message, or a part of it when partial
		part bool
	}{
		// Placeholders from the published samples.
		{in: "<IPERF SERVER IP ADDRESS>", want: placeholder},
		{in: "CHANGE THIS", want: placeholder},
		{in: "REPLACE_WITH_YOUR_AZURE_IOT_HUB_OR_IOT_CENTRAL_URLS", want: placeholder},
		{in: "<your_event_grid_mqtt_hostname>", want: placeholder},
		{in: "${IOT_HUB}", want: placeholder},
		{in: "{{hub}}.azure-devices.net", want: placeholder},
		{in: "YOUR_HUB_NAME", want: placeholder},
		{in: "IOT HUB HOSTNAME", want: placeholder},
		{in: "", want: "empty entry: put the host name or IPv4 address the app connects to here, or remove the entry"},
		// Spaces.
		{in: " example.com", want: "has spaces at the start or end; remove them"},
		{in: "example.com\t", want: "has spaces at the start or end; remove them"},
		{in: "my host.example", want: "contains a space; host names and addresses cannot"},
		// URLs, paths, CIDR.
		{in: "https://example.com/", want: `is a URL; AllowedConnections takes a host name: use "example.com"`},
		{in: "mqtts://Hub.azure-devices.net:8883", want: `is a URL; AllowedConnections takes a host name: use "Hub.azure-devices.net"`},
		{in: "example.com/api", want: `contains a path; AllowedConnections takes just the host: use "example.com"`},
		{in: "10.0.0.0/8", want: "is an address range (CIDR); AllowedConnections takes single addresses: list each one"},
		{in: "2001:db8::/32", want: "is an address range (CIDR); AllowedConnections takes single addresses: list each one"},
		// Lengths and label syntax.
		{in: strings.Repeat("a", 64) + ".com", want: "is 64 octets long, more than 63", part: true},
		{in: strings.Repeat("abcdefghi.", 25) + "example", want: "octets long, more than 253", part: true},
		{in: "-bad.example.com", want: `label "-bad" starts with a hyphen`},
		{in: "bad-.example.com", want: `label "bad-" ends with a hyphen`},
		{in: "a..example.com", want: "empty label", part: true},
		{in: "my_host.example.com", want: "contains '_'", part: true},
		{in: "user@example.com", want: "contains '@'", part: true},
		// Wildcards.
		{in: "*", want: `a lone "*" would allow every host`, part: true},
		{in: "*.com", want: "wildcard over the top-level domain", part: true},
		{in: "a.*.example.com", want: `"*" is allowed only as the whole first label`, part: true},
		{in: "*example.com", want: `"*" is allowed only as the whole first label`, part: true},
		{in: "192.168.1.*", want: "wildcards in IPv4 addresses are not supported (nor are ranges): list each address"},
		// Addresses.
		{in: "256.1.1.1", want: "not a valid IPv4 address", part: true},
		{in: "192.168.01.1", want: "not a valid IPv4 address", part: true},
		{in: "1.2.3", want: "not a valid IPv4 address", part: true},
		{in: "12345", want: "a bare number is neither a host name nor an IPv4 address"},
		{in: "0.0.0.0", want: "the unspecified address matches no destination"},
		{in: "::", want: "the unspecified address matches no destination"},
		{in: "::ffff:192.0.2.1", want: "IPv4-mapped IPv6 address; write the IPv4 address 192.0.2.1"},
		{in: "fe80::1%eth0", want: `IPv6 zone "eth0" names an interface of one machine; remove the %zone`},
		{in: "[fe80::1%eth0]:80", want: `IPv6 zone "eth0" names an interface of one machine; remove the %zone`},
		{in: "2001:db8:::1", want: "not a valid IPv6 address", part: true},
		{in: "[2001:db8::1", want: "has '[' without a closing ']'", part: true},
		{in: "[2001:db8::1]443", want: `unexpected "443" after ']'`, part: true},
		{in: "[192.0.2.1]:80", want: "brackets are only for IPv6 addresses", part: true},
		{in: "2001:db8::1::443", want: "not a valid IPv6 address", part: true},
		{in: "2001:db8:1:2:3:4:5:6:443", want: "an IPv6 address with a port must be written in brackets: [2001:db8:1:2:3:4:5:6]:443"},
		// Ports.
		{in: "example.com:0", want: "port 0 is outside 1..65535"},
		{in: "example.com:65536", want: "port 65536 is outside 1..65535"},
		{in: "example.com:99999999999999999999", want: "port 99999999999999999999 is outside 1..65535"},
		{in: "example.com:https", want: `port "https" is not a number`},
		{in: "example.com:-1", want: `port "-1" is not a number`},
		{in: "example.com:", want: "empty port after ':'"},
		{in: ":443", want: "nothing before ':'; write host:port"},
		{in: "_http._tcp.local:80", want: "a DNS-SD service name takes its ports from its SRV records", part: true},
		{in: "_http._xyz.local", want: `second label must be "_tcp" or "_udp"`, part: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEntry(tt.in)
			if err == nil {
				t.Fatalf("ParseEntry(%q) = %+v, want an error", tt.in, got)
			}
			msg := err.Error()
			if tt.part && !strings.Contains(msg, tt.want) || !tt.part && msg != tt.want {
				t.Errorf("ParseEntry(%q) error = %q, want %q", tt.in, msg, tt.want)
			}
		})
	}
}
