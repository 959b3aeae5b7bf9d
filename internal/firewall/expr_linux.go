package firewall

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers: the verdict register and the 32-bit data registers that
// concatenations are assembled in.
const (
	regVerdict = 0
	reg32      = 8 // NFT_REG32_00
)

// Kernel constants google/nftables does not name.
const (
	ipsDstNAT          = 1 << 5 // IPS_DST_NAT
	natRangeProtoSpec  = 2      // NF_NAT_RANGE_PROTO_SPECIFIED
	ctDirReply         = 1      // IP_CT_DIR_REPLY
	loopbackIfindex    = 1      // lo is always ifindex 1 in every namespace
	tcpFlagSYN         = 0x02
	tcpFlagACK         = 0x10
	icmpv6RouterSol    = 133
	icmpv6RouterAdv    = 134
	icmpv6NeighSol     = 135
	icmpv6NeighAdv     = 136
	icmpv6MLDQuery     = 130
	icmpv6MLDReport    = 131
	icmpv6MLDDone      = 132
	icmpv6MLD2Report   = 143
	protoICMPv6        = unix.IPPROTO_ICMPV6
	protoTCP           = unix.IPPROTO_TCP
	protoUDP           = unix.IPPROTO_UDP
	nfprotoIPv4        = unix.NFPROTO_IPV4
	nfprotoIPv6        = unix.NFPROTO_IPV6
	ctStateEstablished = expr.CtStateBitESTABLISHED
	ctStateRelated     = expr.CtStateBitRELATED
	ctStateInvalid     = expr.CtStateBitINVALID
)

// Set key types, with the concatenations pinhole uses.
var (
	typeV4Port       = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeV6Port       = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	typeProtoPort    = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	typeProtoPortUID = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeUID)
	typeProtoPortCg  = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeCGroupV2)
)

func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func ne64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// Element keys. Components of a concatenation are each padded to 4 bytes,
// the way the kernel lays them out in consecutive registers.
func keyProto(p uint8) []byte { return []byte{p, 0, 0, 0} }
func keyPort(p uint16) []byte { return []byte{byte(p >> 8), byte(p), 0, 0} }

func keyAddrPort(a netip.Addr, proto uint8, port uint16) []byte {
	b := a.AsSlice()
	b = append(b, keyProto(proto)...)
	return append(b, keyPort(port)...)
}

func keyProtoPort(proto uint8, port uint16) []byte {
	return append(keyProto(proto), keyPort(port)...)
}

// Expression builders. Each returns the expressions of one match.

func cmpEq(reg uint32, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}

func metaEq(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, cmpEq(1, data)}
}

func matchNFProto(fam byte) []expr.Any { return metaEq(expr.MetaKeyNFPROTO, []byte{fam}) }
func matchL4(proto byte) []expr.Any    { return metaEq(expr.MetaKeyL4PROTO, []byte{proto}) }
func matchMark(mark uint32) []expr.Any { return metaEq(expr.MetaKeyMARK, ne32(mark)) }
func matchSKUID(uid uint32) []expr.Any { return metaEq(expr.MetaKeySKUID, ne32(uid)) }
func matchIIFLo() []expr.Any           { return metaEq(expr.MetaKeyIIF, ne32(loopbackIfindex)) }
func matchOIFLo() []expr.Any           { return metaEq(expr.MetaKeyOIF, ne32(loopbackIfindex)) }
func matchIIFName(name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return metaEq(expr.MetaKeyIIFNAME, b)
}

func matchCtState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(bits), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
	}
}

func matchCtReply() []expr.Any {
	return []expr.Any{&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1}, cmpEq(1, []byte{ctDirReply})}
}

// matchDNAT matches packets whose destination was rewritten (by our
// redirect, in the nat output chain that runs before the filter chain).
func matchDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(ipsDstNAT), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
	}
}

func matchNotDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(ipsDstNAT), Xor: ne32(0)},
		cmpEq(1, ne32(0)),
	}
}

// matchSynAck matches TCP segments with SYN and ACK set (op Eq) or not both
// set (op Neq).
func matchSynAck(op expr.CmpOp) []expr.Any {
	return append(matchL4(protoTCP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagSYN | tcpFlagACK}, Xor: []byte{0}},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{tcpFlagSYN | tcpFlagACK}},
	)
}

func loadTH(off uint32, reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
}

const (
	thSport = 0
	thDport = 2
)

func matchTHPort(off uint32, port uint16) []expr.Any {
	return []expr.Any{loadTH(off, 1), cmpEq(1, be16(port))}
}

func matchUDPPorts(sport, dport uint16) []expr.Any {
	m := matchL4(protoUDP)
	m = append(m, matchTHPort(thSport, sport)...)
	return append(m, matchTHPort(thDport, dport)...)
}

// matchAddr matches the source (src true) or destination address against an
// exact address or a prefix.
func matchAddr(src bool, p netip.Prefix) []expr.Any {
	p = p.Masked()
	fam, off, n := byte(nfprotoIPv4), uint32(16), uint32(4)
	if p.Addr().Is6() {
		fam, off, n = nfprotoIPv6, 24, 16
	}
	if src {
		off -= n
	}
	m := matchNFProto(fam)
	m = append(m, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
	if p.Bits() < p.Addr().BitLen() {
		m = append(m, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: prefixMask(p), Xor: make([]byte, n)})
	}
	return append(m, cmpEq(1, p.Addr().AsSlice()))
}

func prefixMask(p netip.Prefix) []byte {
	n := p.Addr().BitLen() / 8
	b := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

func lookup(reg uint32, s *nftables.Set) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID}
}

func vmap(reg uint32, s *nftables.Set) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, IsDestRegSet: true, DestRegister: regVerdict}
}

// matchDaddrIn looks the destination address up in a plain address set.
func matchDaddrIn(v6 bool, s *nftables.Set) []expr.Any {
	if v6 {
		return append(matchNFProto(nfprotoIPv6),
			&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			lookup(reg32, s))
	}
	return append(matchNFProto(nfprotoIPv4),
		&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		lookup(reg32, s))
}

// matchDaddrPortIn looks daddr . l4proto . th dport up in a concatenated set.
func matchDaddrPortIn(v6 bool, s *nftables.Set) []expr.Any {
	fam, off, n := byte(nfprotoIPv4), uint32(16), uint32(4)
	if v6 {
		fam, off, n = nfprotoIPv6, 24, 16
	}
	next := reg32 + n/4
	return append(matchNFProto(fam),
		&expr.Payload{DestRegister: reg32, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
		loadTH(thDport, next+1),
		lookup(reg32, s))
}

// loadProtoPort loads l4proto . th port (sport or dport) into reg32 00..01.
func loadProtoPort(off uint32) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32}, loadTH(off, reg32+1)}
}

func socketCgroup(level int, reg uint32) *expr.Socket {
	return &expr.Socket{Key: expr.SocketKeyCgroupv2, Level: uint32(level), Register: reg}
}

func counter() *expr.Counter { return &expr.Counter{} }

func verdict(k expr.VerdictKind) *expr.Verdict { return &expr.Verdict{Kind: k} }

func jumpTo(kind expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

func rejectTCPReset() *expr.Reject { return &expr.Reject{Type: unix.NFT_REJECT_TCP_RST} }

func rejectAdminProhibited() *expr.Reject {
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
}

func logTo(group uint16, prefix string) *expr.Log {
	return &expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(prefix)}
}

func limit(rate, burst uint32) *expr.Limit {
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rate), Unit: expr.LimitTimeSecond, Burst: burst}
}

// redirectToMapped redirects to the loopback port a map lookup left in
// register 1.
func redirectToMapped() *expr.Redir {
	return &expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: natRangeProtoSpec}
}
