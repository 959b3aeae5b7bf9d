package export

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Formats are the export formats, in the order help lists them.
var Formats = []string{"nftables", "dnsmasq"}

// Write writes the plan in format.
func (p *Plan) Write(w io.Writer, format string) error {
	switch format {
	case "nftables":
		return p.WriteNFT(w)
	case "dnsmasq":
		return p.WriteDnsmasq(w)
	}
	return fmt.Errorf("unknown export format %q (want %s)", format, strings.Join(Formats, " or "))
}

func (p *Plan) header(b *bufio.Writer, format string) {
	fmt.Fprintf(b, "# pinhole endpoints export --format %s\n", format)
	if p.title != "" {
		fmt.Fprintf(b, "# %s\n", p.title)
	}
	fmt.Fprintln(b, "#")
}

func (p *Plan) footer(b *bufio.Writer) {
	if len(p.skipped) == 0 && !p.noDNS {
		return
	}
	fmt.Fprintln(b, "\n# Not in these rules:")
	if p.noDNS {
		fmt.Fprintln(b, "#   the devices' DNS servers: forwarded DNS needs --dns-server ADDR; queries to this gateway itself are not forwarded traffic")
	}
	for _, s := range p.skipped {
		fmt.Fprintf(b, "#   %s\n", s)
	}
}

// WriteNFT writes an nftables table for a Linux gateway: forwarded traffic
// from the devices may reach only the listed destinations; other hosts'
// traffic is left alone.
func (p *Plan) WriteNFT(w io.Writer) error {
	b := bufio.NewWriter(w)
	p.header(b, "nftables")
	fmt.Fprintf(b, `# For a Linux gateway in front of the devices. Traffic it forwards from the
# devices (sets devices_v4, devices_v6) may reach only what is listed below and
# is refused otherwise (TCP reset, ICMP administratively prohibited; logged with
# the prefix "%[1]s deny: "). Other hosts' traffic is left alone.
# Host names: dnsmasq on the gateway puts the addresses of its answers into the
# sets; add the lines of "pinhole endpoints export --format dnsmasq" (same
# options) to its config and give the devices the gateway as their DNS server.
# The sets only grow; to empty them, load this file again and clear dnsmasq's
# cache (kill -HUP its process).
#
# Load with: nft -f FILE (one transaction; it replaces an earlier version).

table inet %[1]s
delete table inet %[1]s

table inet %[1]s {
`, p.table)
	var v4, v6 []string
	for _, d := range p.devices {
		if d.Addr().Is4() {
			v4 = append(v4, d.String())
		} else {
			v6 = append(v6, d.String())
		}
	}
	writeSet(b, "devices_v4", "ipv4_addr", true, v4)
	writeSet(b, "devices_v6", "ipv6_addr", true, v6)
	for _, s := range p.sets {
		fmt.Fprintf(b, "\n\t# %s:\n", describePorts(s))
		for _, g := range s.groups {
			fmt.Fprintf(b, "\t#   %s\n", g.head)
			for _, d := range g.dests {
				fmt.Fprintf(b, "\t#     %s\n", d)
			}
		}
		var a4, a6 []string
		for _, a := range s.addrs {
			if a.Is4() {
				a4 = append(a4, a.String())
			} else {
				a6 = append(a6, a.String())
			}
		}
		writeSet(b, s.key+"_v4", "ipv4_addr", false, a4)
		writeSet(b, s.key+"_v6", "ipv6_addr", false, a6)
	}
	fmt.Fprintf(b, `
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr @devices_v4 jump devices_out
		ip6 saddr @devices_v6 jump devices_out
	}

	chain devices_out {
		ct state established,related accept
		ct state invalid drop
`)
	for _, s := range p.sets {
		match := ""
		if len(s.ports) == 1 {
			match = fmt.Sprintf("%s dport %d ", s.ports[0].Proto, s.ports[0].Port)
		}
		fmt.Fprintf(b, "\t\t%sip daddr @%s_v4 accept\n", match, s.key)
		fmt.Fprintf(b, "\t\t%sip6 daddr @%s_v6 accept\n", match, s.key)
	}
	fmt.Fprintf(b, `		limit rate 10/second burst 20 packets log prefix "%s deny: "
		meta l4proto tcp reject with tcp reset
		reject with icmpx admin-prohibited
	}
}
`, p.table)
	p.footer(b)
	return b.Flush()
}

func writeSet(b *bufio.Writer, name, typ string, interval bool, elems []string) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", name, typ)
	if interval {
		fmt.Fprintln(b, "\t\tflags interval")
	}
	if len(elems) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	fmt.Fprintln(b, "\t}")
}

func describePorts(s *portSet) string {
	if len(s.ports) == 0 {
		return "every port and protocol"
	}
	return fmt.Sprintf("%s port %d", strings.ToUpper(s.ports[0].Proto.String()), s.ports[0].Port)
}

// WriteDnsmasq writes dnsmasq's nftset lines that fill the sets of WriteNFT's
// table with the addresses of the host names' answers.
func (p *Plan) WriteDnsmasq(w io.Writer) error {
	b := bufio.NewWriter(w)
	p.header(b, "dnsmasq")
	fmt.Fprintf(b, `# For dnsmasq on the gateway that the devices use as their DNS server (2.87 or
# later, built with nftset: "dnsmasq --version" lists it). It puts the addresses
# of these names' answers into the sets of the nftables table inet %s
# ("pinhole endpoints export --format nftables", same options). A line matches
# its name and every name under it, and dnsmasq uses only the most specific
# line, so a line repeats the sets of the wildcards above it.
`, p.table)
	if len(p.domains) == 0 {
		fmt.Fprintln(b, "\n# No host names: nothing for dnsmasq to fill.")
	}
	for _, d := range p.domains {
		var targets []string
		for _, k := range d.sets {
			targets = append(targets,
				fmt.Sprintf("4#inet#%s#%s_v4", p.table, k),
				fmt.Sprintf("6#inet#%s#%s_v6", p.table, k))
		}
		fmt.Fprintf(b, "\n# %s\nnftset=/%s/%s\n", strings.Join(d.entries, ", "), d.domain, strings.Join(targets, ","))
	}
	p.footer(b)
	return b.Flush()
}

// Devices parses device prefixes as the CLI takes them: a prefix, or an
// address for one device.
func Devices(args []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, a := range args {
		if pf, err := netip.ParsePrefix(a); err == nil {
			out = append(out, pf)
			continue
		}
		ad, err := netip.ParseAddr(a)
		if err != nil || ad.Zone() != "" {
			return nil, fmt.Errorf("device %q: want an address or a prefix such as 192.168.10.0/24", a)
		}
		out = append(out, netip.PrefixFrom(ad.Unmap(), ad.Unmap().BitLen()))
	}
	return out, nil
}
