package firewall

import (
	"log/slog"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// FuzzParseRule feeds rule dumps (kernel replies) to the parser and decoder:
// they must never panic, whatever the bytes.
func FuzzParseRule(f *testing.F) {
	m, err := newModel(testPolicy(nil), fixedCgroupID(77), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	tx := newTxn()
	var id uint32
	if _, err := buildTable(tx, m, nil, &id); err != nil {
		f.Fatal(err)
	}
	for _, msg := range tx.msgs {
		if msg.Header.Type == netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE) {
			f.Add(msg.Data)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, r, err := parseRule(b)
		if err != nil {
			return
		}
		d, _ := decodeRule(chain, r, nil)
		_ = d.Match
	})
}

// FuzzExtackMsg feeds error replies to the extended-ack parser.
func FuzzExtackMsg(f *testing.F) {
	f.Add(uint16(unix.NLM_F_ACK_TLVS|unix.NLM_F_CAPPED), []byte("\xfe\xff\xff\xff\x14\x00\x00\x00\x00\x0a\x05\x00\x01\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x01\x00bad set\x00"))
	f.Add(uint16(unix.NLM_F_ACK_TLVS), []byte("\xfe\xff\xff\xff\x14\x00\x00\x00\x00\x0a\x05\x00\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, flags uint16, data []byte) {
		extackMsg(syscall.NetlinkMessage{Header: syscall.NlMsghdr{Flags: flags}, Data: data})
	})
}
