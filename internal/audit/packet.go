package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is an IP protocol number; it reads and writes as a name ("tcp",
// "icmpv6") where it has one and as a decimal number otherwise.
type Proto uint8

const (
	ProtoICMP    Proto = 1
	ProtoTCP     Proto = 6
	ProtoUDP     Proto = 17
	ProtoDCCP    Proto = 33
	ProtoICMPv6  Proto = 58
	ProtoSCTP    Proto = 132
	ProtoUDPLite Proto = 136
)

var protoNames = map[Proto]string{
	ProtoICMP:    "icmp",
	ProtoTCP:     "tcp",
	ProtoUDP:     "udp",
	ProtoDCCP:    "dccp",
	ProtoICMPv6:  "icmpv6",
	ProtoSCTP:    "sctp",
	ProtoUDPLite: "udplite",
}

func (p Proto) String() string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *Proto) UnmarshalText(b []byte) error {
	s := string(b)
	for k, n := range protoNames {
		if n == s {
			*p = k
			return nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return fmt.Errorf("protocol %q: not a name or a number 0-255", s)
	}
	*p = Proto(n)
	return nil
}

// hasPorts reports whether p's header starts with 16-bit source and
// destination ports.
func (p Proto) hasPorts() bool {
	switch p {
	case ProtoTCP, ProtoUDP, ProtoDCCP, ProtoSCTP, ProtoUDPLite:
		return true
	}
	return false
}

// TCPFlags are the flag bits of a TCP header; they read and write as a
// comma-separated list such as "SYN,ACK".
type TCPFlags uint8

const (
	FIN TCPFlags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

var tcpFlagNames = [8]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

func (f TCPFlags) String() string {
	var b strings.Builder
	for i, n := range tcpFlagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

func (f TCPFlags) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

func (f *TCPFlags) UnmarshalText(b []byte) error {
	var out TCPFlags
	if len(b) > 0 {
	next:
		for n := range strings.SplitSeq(string(b), ",") {
			for i, name := range tcpFlagNames {
				if n == name {
					out |= 1 << i
					continue next
				}
			}
			return fmt.Errorf("tcp flags %q: unknown flag %q", b, n)
		}
	}
	*f = out
	return nil
}

// Flow is what the audit needs from a logged packet's headers.
type Flow struct {
	Src, Dst netip.Addr
	Proto    Proto
	// SrcPort and DstPort are set for TCP, UDP, UDP-Lite, SCTP and DCCP.
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are set for ICMP and ICMPv6.
	ICMPType, ICMPCode uint8
	TCPFlags           TCPFlags
	// Fragment: the packet is a fragment; only the first one has ports.
	Fragment bool
	// Truncated: the packet ended before the transport header did, so some
	// fields are missing.
	Truncated bool
}

// IPv6 extension headers the parser walks through.
const (
	ipv6HopByHop  = 0
	ipv6Routing   = 43
	ipv6Fragment  = 44
	ipv6AH        = 51
	ipv6DestOpts  = 60
	ipv6Mobility  = 135
	ipv6HIP       = 139
	ipv6Shim6     = 140
	maxExtHeaders = 16
)

var errEmpty = errors.New("empty packet")

// ParsePacket reads the IP and transport headers of a packet that starts
// with its IPv4 or IPv6 header, as NFLOG delivers it. It fails only when
// not even the addresses can be read; a packet cut short after them gives a
// Flow with Truncated set.
func ParsePacket(b []byte) (Flow, error) {
	if len(b) == 0 {
		return Flow{}, errEmpty
	}
	switch v := b[0] >> 4; v {
	case 4:
		return parseIPv4(b)
	case 6:
		return parseIPv6(b)
	default:
		return Flow{}, fmt.Errorf("ip version %d, want 4 or 6", v)
	}
}

func parseIPv4(b []byte) (Flow, error) {
	if len(b) < 20 {
		return Flow{}, fmt.Errorf("ipv4 header: %d bytes, need 20", len(b))
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return Flow{}, fmt.Errorf("ipv4 header length %d, below 20", ihl)
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < ihl {
		return Flow{}, fmt.Errorf("ipv4 total length %d, below header length %d", total, ihl)
	}
	f := Flow{
		Src:   netip.AddrFrom4([4]byte(b[12:16])),
		Dst:   netip.AddrFrom4([4]byte(b[16:20])),
		Proto: Proto(b[9]),
	}
	frag := binary.BigEndian.Uint16(b[6:8])
	if frag&0x3fff != 0 { // more fragments or an offset
		f.Fragment = true
	}
	if frag&0x1fff != 0 {
		return f, nil // not the first fragment: no transport header
	}
	if len(b) < ihl {
		f.Truncated = true
		return f, nil
	}
	f.transport(b[ihl:min(total, len(b))])
	return f, nil
}

func parseIPv6(b []byte) (Flow, error) {
	if len(b) < 40 {
		return Flow{}, fmt.Errorf("ipv6 header: %d bytes, need 40", len(b))
	}
	f := Flow{
		Src: netip.AddrFrom16([16]byte(b[8:24])),
		Dst: netip.AddrFrom16([16]byte(b[24:40])),
	}
	// Ignore bytes after the payload; a zero payload length means a
	// jumbogram, and then the captured bytes are all we know.
	end := len(b)
	if plen := int(binary.BigEndian.Uint16(b[4:6])); plen != 0 && 40+plen < end {
		end = 40 + plen
	}
	next, off := b[6], 40
	for range maxExtHeaders {
		var hlen int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6Mobility, ipv6HIP, ipv6Shim6:
			if off+2 > end {
				f.Proto, f.Truncated = Proto(next), true
				return f, nil
			}
			hlen = (int(b[off+1]) + 1) * 8
		case ipv6AH:
			if off+2 > end {
				f.Proto, f.Truncated = Proto(next), true
				return f, nil
			}
			hlen = (int(b[off+1]) + 2) * 4
		case ipv6Fragment:
			if off+8 > end {
				f.Proto, f.Truncated = Proto(next), true
				return f, nil
			}
			fo := binary.BigEndian.Uint16(b[off+2 : off+4])
			if fo != 0 { // an offset or more fragments; 0 is an atomic fragment
				f.Fragment = true
			}
			if fo&^7 != 0 {
				f.Proto = Proto(b[off]) // a later fragment: no transport header
				return f, nil
			}
			hlen = 8
		default: // a transport protocol, ESP, or no next header
			f.Proto = Proto(next)
			f.transport(b[off:end])
			return f, nil
		}
		if off+hlen > end {
			f.Proto, f.Truncated = Proto(next), true
			return f, nil
		}
		next, off = b[off], off+hlen
	}
	// Too long a chain to be an honest packet; report where it stopped.
	f.Proto, f.Truncated = Proto(next), true
	return f, nil
}

// transport reads the transport header at the start of p.
func (f *Flow) transport(p []byte) {
	need := 0
	switch {
	case f.Proto == ProtoTCP:
		need = 14
		if len(p) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(p[0:2])
			f.DstPort = binary.BigEndian.Uint16(p[2:4])
		}
		if len(p) >= 14 {
			f.TCPFlags = TCPFlags(p[13])
		}
	case f.Proto.hasPorts():
		need = 4
		if len(p) >= 4 {
			f.SrcPort = binary.BigEndian.Uint16(p[0:2])
			f.DstPort = binary.BigEndian.Uint16(p[2:4])
		}
	case f.Proto == ProtoICMP, f.Proto == ProtoICMPv6:
		need = 2
		if len(p) >= 2 {
			f.ICMPType, f.ICMPCode = p[0], p[1]
		}
	default:
		return
	}
	if len(p) < need {
		f.Truncated = true
	}
}
