package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// snapLen is how much of each packet the kernel copies: enough for an IPv6
// header, a chain of extension headers and the transport header.
const snapLen = 256

// NFLOG is the Source that reads the firewall's NFLOG group. Only one reader
// may bind a group in a network namespace.
type NFLOG struct {
	Group uint16
	// NetNS, if not zero, is an open network namespace file whose group is
	// read instead of the caller's.
	NetNS int
	// Logger, if non-nil, receives problems resolving interface names.
	Logger *slog.Logger
}

// Run binds the group and delivers each logged packet to sink until ctx is
// done. It fails if the group cannot be bound (for example, because another
// process reads it) or if reading fails for good; a receive buffer overrun
// is reported to sink.Lost and reading goes on.
func (n *NFLOG) Run(ctx context.Context, sink Sink) error {
	log := n.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nf, err := nflog.Open(&nflog.Config{
		Group:    n.Group,
		NetNS:    n.NetNS,
		Copymode: nflog.CopyPacket,
		Bufsize:  snapLen,
		Timeout:  10, // hand batched packets over within 100 ms
	})
	if err != nil {
		return fmt.Errorf("open nflog group %d: %w", n.Group, err)
	}
	// Room for bursts; the kernel caps it at rmem_max for non-root callers.
	if err := nf.Con.SetReadBuffer(1 << 20); err != nil {
		log.Debug("nflog receive buffer", "err", err)
	}
	ifn := newIfNames(n.NetNS, log)
	defer ifn.close()

	fatal := make(chan error, 1)
	hook := func(a nflog.Attribute) int {
		if ctx.Err() != nil {
			return 1
		}
		var p Packet
		if a.Prefix != nil {
			p.Prefix = *a.Prefix
		}
		if a.Payload != nil {
			// The library reuses the buffer behind Payload for the next message.
			p.Payload = bytes.Clone(*a.Payload)
		}
		if a.UID != nil {
			u := *a.UID
			p.UID = &u
		}
		if a.GID != nil {
			g := *a.GID
			p.GID = &g
		}
		if a.InDev != nil {
			p.InIface = ifn.name(*a.InDev)
		}
		if a.OutDev != nil {
			p.OutIface = ifn.name(*a.OutDev)
		}
		p.Leaving = a.OutDev != nil && a.InDev == nil
		sink.Deliver(p)
		return 0
	}
	errFn := func(err error) int {
		if ctx.Err() != nil {
			return 1 // "i/o timeout" or "use of closed file" from cancelling
		}
		if errors.Is(err, unix.ENOBUFS) {
			sink.Lost(err)
			return 0
		}
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Timeout() {
			return 0
		}
		select {
		case fatal <- err:
		default:
		}
		return 1
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
		cancel()
		nf.Close()
		return fmt.Errorf("listen on nflog group %d: %w", n.Group, err)
	}
	select {
	case <-ctx.Done():
		err = nil
	case e := <-fatal:
		err = fmt.Errorf("read nflog group %d: %w", n.Group, e)
	}
	// Cancel before Close: go-nflog v2.3.0 races if Close comes first.
	cancel()
	nf.Close()
	return err
}

// ifNames resolves interface indexes to names in the NFLOG namespace, with a
// small cache. Used from one goroutine only.
type ifNames struct {
	conn  *netlink.Conn // nil if it could not be opened
	cache map[uint32]ifName
}

type ifName struct {
	name string
	at   time.Time
}

const (
	ifNameTTL    = 30 * time.Second
	ifNameMaxLen = 64
)

func newIfNames(netns int, log *slog.Logger) *ifNames {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: netns})
	if err != nil {
		log.Warn("interface names unavailable in audit records", "err", err)
		c = nil
	}
	return &ifNames{conn: c, cache: make(map[uint32]ifName)}
}

func (n *ifNames) close() {
	if n.conn != nil {
		n.conn.Close()
	}
}

func (n *ifNames) name(index uint32) string {
	if index == 0 || n.conn == nil {
		return ""
	}
	now := time.Now()
	if c, ok := n.cache[index]; ok && now.Sub(c.at) < ifNameTTL {
		return c.name
	}
	if len(n.cache) >= ifNameMaxLen {
		clear(n.cache)
	}
	name, _ := n.lookup(index) // an unknown index stays nameless
	n.cache[index] = ifName{name: name, at: now}
	return name
}

// lookup asks the kernel for the link with index (RTM_GETLINK).
func (n *ifNames) lookup(index uint32) (string, error) {
	ifi := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(ifi[4:8], index)
	msgs, err := n.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request},
		Data:   ifi,
	})
	if err != nil {
		return "", fmt.Errorf("get link %d: %w", index, err)
	}
	for _, m := range msgs {
		if len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return "", fmt.Errorf("get link %d: %w", index, err)
		}
		for ad.Next() {
			if ad.Type() == unix.IFLA_IFNAME {
				return ad.String(), nil
			}
		}
	}
	return "", fmt.Errorf("get link %d: no name", index)
}
