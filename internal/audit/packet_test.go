package audit

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Packet builders for tests. Checksums are left zero: nothing reads them.

func ipv4(proto byte, src, dst string, frag uint16, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[6:8], frag)
	h[8] = 64
	h[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	return append(h, payload...)
}

func ipv6(next byte, src, dst string, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return append(h, payload...)
}

func tcpHdr(sport, dport uint16, flags TCPFlags) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:2], sport)
	binary.BigEndian.PutUint16(h[2:4], dport)
	h[12] = 5 << 4
	h[13] = byte(flags)
	return h
}

func udpHdr(sport, dport uint16) []byte {
	h := make([]byte, 8, 10)
	binary.BigEndian.PutUint16(h[0:2], sport)
	binary.BigEndian.PutUint16(h[2:4], dport)
	binary.BigEndian.PutUint16(h[4:6], 10)
	return append(h, 'h', 'i')
}

func icmpHdr(typ, code byte) []byte { return []byte{typ, code, 0, 0, 0, 0, 0, 1} }

// extHdr is a generic IPv6 extension header of (units+1)*8 bytes, then rest.
func extHdr(next byte, units int, rest []byte) []byte {
	h := make([]byte, (units+1)*8)
	h[0], h[1] = next, byte(units)
	return append(h, rest...)
}

func fragHdr(next byte, offset uint16, more bool, rest []byte) []byte {
	h := make([]byte, 8)
	h[0] = next
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(h[2:4], fo)
	return append(h, rest...)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestParsePacket(t *testing.T) {
	t.Parallel()
	const (
		v4a, v4b = "10.0.0.2", "198.18.0.9"
		v6a, v6b = "2001:db8::2", "2001:db8:1::9"
	)
	v4 := func(p Proto) Flow { return Flow{Src: addr(v4a), Dst: addr(v4b), Proto: p} }
	v6 := func(p Proto) Flow { return Flow{Src: addr(v6a), Dst: addr(v6b), Proto: p} }
	with := func(f Flow, edit func(*Flow)) Flow { edit(&f); return f }
	syn := ipv4(6, v4a, v4b, 0x4000, tcpHdr(40000, 443, SYN))

	tests := []struct {
		name string
		in   []byte
		want Flow
		ok   bool
	}{
		{"ipv4 tcp syn", syn, with(v4(ProtoTCP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.TCPFlags = 40000, 443, SYN
		}), true},
		{"ipv4 tcp syn-ack", ipv4(6, v4a, v4b, 0, tcpHdr(80, 5000, SYN|ACK)), with(v4(ProtoTCP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.TCPFlags = 80, 5000, SYN|ACK
		}), true},
		{"ipv4 udp", ipv4(17, v4a, v4b, 0, udpHdr(5353, 9)), with(v4(ProtoUDP), func(f *Flow) {
			f.SrcPort, f.DstPort = 5353, 9
		}), true},
		{"ipv4 udplite", ipv4(136, v4a, v4b, 0, udpHdr(1, 2)), with(v4(ProtoUDPLite), func(f *Flow) {
			f.SrcPort, f.DstPort = 1, 2
		}), true},
		{"ipv4 sctp", ipv4(132, v4a, v4b, 0, udpHdr(3868, 3868)), with(v4(ProtoSCTP), func(f *Flow) {
			f.SrcPort, f.DstPort = 3868, 3868
		}), true},
		{"ipv4 icmp echo", ipv4(1, v4a, v4b, 0, icmpHdr(8, 0)), with(v4(ProtoICMP), func(f *Flow) {
			f.ICMPType = 8
		}), true},
		{"ipv4 icmp unreachable", ipv4(1, v4a, v4b, 0, icmpHdr(3, 13)), with(v4(ProtoICMP), func(f *Flow) {
			f.ICMPType, f.ICMPCode = 3, 13
		}), true},
		{"ipv4 gre has no ports", ipv4(47, v4a, v4b, 0, []byte{0, 0, 8, 0}), v4(47), true},
		{"ipv4 options", func() []byte {
			p := ipv4(17, v4a, v4b, 0, append([]byte{1, 1, 1, 0}, udpHdr(7, 8)...))
			p[0] = 0x46
			return p
		}(), with(v4(ProtoUDP), func(f *Flow) { f.SrcPort, f.DstPort = 7, 8 }), true},
		{"ipv4 first fragment", ipv4(17, v4a, v4b, 0x2000, udpHdr(1000, 53)), with(v4(ProtoUDP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.Fragment = 1000, 53, true
		}), true},
		{"ipv4 later fragment", ipv4(17, v4a, v4b, 185, udpHdr(1000, 53)), with(v4(ProtoUDP), func(f *Flow) {
			f.Fragment = true
		}), true},
		{"ipv4 first fragment cut", ipv4(6, v4a, v4b, 0x2000, tcpHdr(1, 2, 0))[:20], with(v4(ProtoTCP), func(f *Flow) {
			f.Fragment, f.Truncated = true, true
		}), true},
		{"ipv4 snapped after ports", syn[:24], with(v4(ProtoTCP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.Truncated = 40000, 443, true
		}), true},
		{"ipv4 snapped in ports", syn[:22], with(v4(ProtoTCP), func(f *Flow) { f.Truncated = true }), true},
		{"ipv4 snapped in options", func() []byte {
			p := ipv4(6, v4a, v4b, 0, make([]byte, 60))
			p[0] = 0x4f
			return p[:20]
		}(), with(v4(ProtoTCP), func(f *Flow) { f.Truncated = true }), true},
		{"ipv4 bytes after total length ignored", func() []byte {
			p := slices.Clone(syn)
			binary.BigEndian.PutUint16(p[2:4], 24) // ports only
			return p
		}(), with(v4(ProtoTCP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.Truncated = 40000, 443, true
		}), true},
		{"ipv6 tcp syn", ipv6(6, v6a, v6b, tcpHdr(50000, 443, SYN)), with(v6(ProtoTCP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.TCPFlags = 50000, 443, SYN
		}), true},
		{"ipv6 udp", ipv6(17, v6a, v6b, udpHdr(546, 547)), with(v6(ProtoUDP), func(f *Flow) {
			f.SrcPort, f.DstPort = 546, 547
		}), true},
		{"icmpv6 echo", ipv6(58, v6a, v6b, icmpHdr(128, 0)), with(v6(ProtoICMPv6), func(f *Flow) {
			f.ICMPType = 128
		}), true},
		{"ipv6 hop-by-hop then icmpv6 (MLD)", ipv6(0, v6a, v6b, extHdr(58, 0, icmpHdr(143, 0))), with(v6(ProtoICMPv6), func(f *Flow) {
			f.ICMPType = 143
		}), true},
		{"ipv6 chain", ipv6(0, v6a, v6b, extHdr(60, 1, extHdr(43, 0, extHdr(51, 0, extHdr(17, 0, udpHdr(1, 2)))))), with(v6(ProtoUDP), func(f *Flow) {
			// AH's length counts 4-byte units minus 2: units 0 in extHdr gives 8 bytes = (0+2)*4.
			f.SrcPort, f.DstPort = 1, 2
		}), true},
		{"ipv6 first fragment", ipv6(44, v6a, v6b, fragHdr(17, 0, true, udpHdr(1, 2))), with(v6(ProtoUDP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.Fragment = 1, 2, true
		}), true},
		{"ipv6 later fragment", ipv6(44, v6a, v6b, fragHdr(6, 100, false, []byte{1, 2, 3, 4})), with(v6(ProtoTCP), func(f *Flow) {
			f.Fragment = true
		}), true},
		{"ipv6 atomic fragment", ipv6(44, v6a, v6b, fragHdr(17, 0, false, udpHdr(1, 2))), with(v6(ProtoUDP), func(f *Flow) {
			f.SrcPort, f.DstPort = 1, 2
		}), true},
		{"ipv6 esp", ipv6(50, v6a, v6b, []byte{0, 0, 0, 1, 0, 0, 0, 1}), v6(50), true},
		{"ipv6 no next header", ipv6(59, v6a, v6b, nil), v6(59), true},
		{"ipv6 ext header cut", ipv6(0, v6a, v6b, extHdr(17, 2, nil))[:50], with(v6(0), func(f *Flow) { f.Truncated = true }), true},
		{"ipv6 ext header length cut", ipv6(0, v6a, v6b, []byte{17}), with(v6(0), func(f *Flow) { f.Truncated = true }), true},
		{"ipv6 fragment header cut", ipv6(44, v6a, v6b, []byte{17, 0, 0}), with(v6(44), func(f *Flow) { f.Truncated = true }), true},
		{"ipv6 payload length stops the chain", func() []byte {
			p := ipv6(0, v6a, v6b, extHdr(17, 0, udpHdr(1, 2)))
			binary.BigEndian.PutUint16(p[4:6], 8) // only the hop-by-hop header
			return p
		}(), with(v6(ProtoUDP), func(f *Flow) { f.Truncated = true }), true},
		{"ipv6 endless chain", func() []byte {
			var p []byte
			for range maxExtHeaders + 1 {
				p = extHdr(60, 0, p)
			}
			return ipv6(60, v6a, v6b, p)
		}(), with(v6(60), func(f *Flow) { f.Truncated = true }), true},
		{"ipv6 tcp snapped", ipv6(6, v6a, v6b, tcpHdr(1, 2, SYN))[:50], with(v6(ProtoTCP), func(f *Flow) {
			f.SrcPort, f.DstPort, f.Truncated = 1, 2, true
		}), true},
		{"icmpv6 snapped", ipv6(58, v6a, v6b, icmpHdr(1, 4))[:41], with(v6(ProtoICMPv6), func(f *Flow) {
			f.Truncated = true
		}), true},
		{"empty", nil, Flow{}, false},
		{"version 5", []byte{0x50, 0, 0, 20}, Flow{}, false},
		{"garbage", []byte("GET / HTTP/1.1\r\n"), Flow{}, false},
		{"ipv4 short", syn[:19], Flow{}, false},
		{"ipv4 ihl below 5", func() []byte { p := slices.Clone(syn); p[0] = 0x44; return p }(), Flow{}, false},
		{"ipv4 total below ihl", func() []byte {
			p := slices.Clone(syn)
			binary.BigEndian.PutUint16(p[2:4], 19)
			return p
		}(), Flow{}, false},
		{"ipv6 short", ipv6(6, v6a, v6b, nil)[:39], Flow{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePacket(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParsePacket(%x) error = %v, want ok %v", tt.in, err, tt.ok)
			}
			if err != nil {
				t.Logf("err: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("ParsePacket(%x) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestProtoText(t *testing.T) {
	t.Parallel()
	for _, p := range []Proto{0, ProtoICMP, ProtoTCP, ProtoUDP, 47, ProtoICMPv6, ProtoSCTP, 255} {
		b, _ := p.MarshalText()
		var got Proto
		if err := got.UnmarshalText(b); err != nil || got != p {
			t.Errorf("Proto round trip %d -> %q -> %d, %v", p, b, got, err)
		}
	}
	for _, bad := range []string{"", "256", "-1", "TCP", "tcp ", "0x6"} {
		var p Proto
		if err := p.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("Proto.UnmarshalText(%q) = %d, want error", bad, p)
		}
	}
}

func TestTCPFlagsText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    TCPFlags
		text string
	}{
		{0, ""},
		{SYN, "SYN"},
		{SYN | ACK, "SYN,ACK"},
		{FIN | PSH | ACK, "FIN,PSH,ACK"},
		{0xff, "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.text {
			t.Errorf("TCPFlags(%#x).String() = %q, want %q", uint8(tt.f), got, tt.text)
		}
		var back TCPFlags
		if err := back.UnmarshalText([]byte(tt.text)); err != nil || back != tt.f {
			t.Errorf("UnmarshalText(%q) = %#x, %v, want %#x", tt.text, uint8(back), err, uint8(tt.f))
		}
	}
	for _, bad := range []string{"syn", "SYN,", ",SYN", "SYN,,ACK", "NS"} {
		var f TCPFlags
		if err := f.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("TCPFlags.UnmarshalText(%q) = %#x, want error", bad, uint8(f))
		}
	}
	// A record's JSON leaves out empty flags.
	b, err := json.Marshal(Record{TCPFlags: SYN})
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil || r.TCPFlags != SYN {
		t.Errorf("JSON round trip of %s = %v, %v", b, r.TCPFlags, err)
	}
}
