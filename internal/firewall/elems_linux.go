package firewall

import (
	"encoding/binary"
	"strconv"
	"strings"
	"sync"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Allow is the hot path of insert-before-answer, so its set element
// messages are encoded here directly (one allocation per message) rather
// than through google/nftables, which builds a tree of attributes per
// element.

const (
	msgNewSetElem = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM
	msgDelSetElem = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELSETELEM
	nlaNested     = unix.NLA_F_NESTED
)

// elemFields says which attributes an element carries besides its key.
type elemFields uint8

const (
	withTimeout    elemFields = 1 << iota // NFTA_SET_ELEM_TIMEOUT, if the element has one
	withExpiration                        // NFTA_SET_ELEM_EXPIRATION = the timeout (needs withTimeout)
)

// rawKeyLen is the length of e's key: the address, then for a port element
// the protocol and the port, each padded to 4 bytes.
func rawKeyLen(e Element) int {
	n := e.Addr.BitLen() / 8
	if e.Port != 0 {
		n += 8
	}
	return n
}

// rawElemBytes is the encoded size of one element.
func rawElemBytes(e Element, f elemFields) int {
	n := attrLen(attrLen(rawKeyLen(e)))
	if f&withTimeout != 0 && e.Timeout != 0 {
		n += attrLen(8)
		if f&withExpiration != 0 {
			n += attrLen(8)
		}
	}
	return attrLen(n)
}

// chunkRaw splits elems into lists of at most maxElemBytes each.
func chunkRaw(elems []Element, f elemFields) [][]Element {
	return chunkBy(elems, func(e Element) int { return rawElemBytes(e, f) })
}

// elemMsg encodes the body of a NEWSETELEM or DELSETELEM message for elems
// of set in pinhole's table: nfgenmsg, table, set, the element list.
func elemMsg(set string, elems []Element, f elemFields) []byte {
	size := 4 + attrLen(len(TableName)+1) + attrLen(len(set)+1) + 4
	for _, e := range elems {
		size += rawElemBytes(e, f)
	}
	b := make([]byte, 0, size)
	b = append(b, unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0)
	b = appendStrAttr(b, unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	b = appendStrAttr(b, unix.NFTA_SET_ELEM_LIST_SET, set)
	list := len(b)
	b = appendAttrHdr(b, unix.NFTA_SET_ELEM_LIST_ELEMENTS|nlaNested)
	for _, e := range elems {
		el := len(b)
		b = appendAttrHdr(b, unix.NFTA_LIST_ELEM|nlaNested)
		key := len(b)
		b = appendAttrHdr(b, unix.NFTA_SET_ELEM_KEY|nlaNested)
		val := len(b)
		b = appendAttrHdr(b, unix.NFTA_DATA_VALUE)
		if e.Addr.Is4() {
			a := e.Addr.As4()
			b = append(b, a[:]...)
		} else {
			a := e.Addr.As16()
			b = append(b, a[:]...)
		}
		if e.Port != 0 {
			b = append(b, uint8(e.Proto), 0, 0, 0, byte(e.Port>>8), byte(e.Port), 0, 0)
		}
		b = endAttr(b, val)
		b = endAttr(b, key)
		if f&withTimeout != 0 && e.Timeout != 0 {
			ms := uint64(e.Timeout.Milliseconds())
			b = appendU64Attr(b, unix.NFTA_SET_ELEM_TIMEOUT, ms)
			if f&withExpiration != 0 {
				b = appendU64Attr(b, unix.NFTA_SET_ELEM_EXPIRATION, ms)
			}
		}
		b = endAttr(b, el)
	}
	return endAttr(b, list)
}

// appendAttrHdr starts an attribute whose length endAttr fills in.
func appendAttrHdr(b []byte, typ uint16) []byte {
	b = binary.NativeEndian.AppendUint16(b, 0)
	return binary.NativeEndian.AppendUint16(b, typ)
}

// endAttr sets the length of the attribute that starts at off and pads the
// buffer to 4 bytes.
func endAttr(b []byte, off int) []byte {
	binary.NativeEndian.PutUint16(b[off:], uint16(len(b)-off))
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendStrAttr(b []byte, typ uint16, s string) []byte {
	off := len(b)
	b = appendAttrHdr(b, typ)
	b = append(b, s...)
	b = append(b, 0)
	return endAttr(b, off)
}

func appendU64Attr(b []byte, typ uint16, v uint64) []byte {
	off := len(b)
	b = appendAttrHdr(b, typ)
	b = binary.BigEndian.AppendUint64(b, v)
	return endAttr(b, off)
}

// addRaw appends one encoded message to the transaction.
func (t *txn) addRaw(desc string, typ uint16, flags netlink.HeaderFlags, data []byte) {
	t.msgs = append(t.msgs, netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: flags}, Data: data})
	t.descs = append(t.descs, desc)
	t.bytes += nlmsgHdrLen + align4(len(data))
}

// timeoutUpdate reports whether the kernel refreshes an existing element
// in place when a (non-exclusive) add carries a timeout and an expiration:
// Linux 6.12 and later (commit 4201f3938914, "netfilter: nf_tables: set
// element timeout update support"). Older kernels keep the old expiry, so
// Allow then deletes and re-adds (add, delete, add in one batch).
var timeoutUpdate = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 12)
})

// kernelAtLeast parses the leading "major.minor" of a kernel release.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return false
	}
	minStr := parts[1]
	if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minStr = minStr[:i]
	}
	mnr, err := strconv.Atoi(minStr)
	if err != nil {
		return false
	}
	return maj > major || maj == major && mnr >= minor
}
