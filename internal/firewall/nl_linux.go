package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// google/nftables v0.3.0 is used only to encode messages. Its Flush is not
// used to talk to the kernel: it asks for an echo of every rule and an ack of
// every message and reads them one by one, which overflows the socket's
// receive buffer with a few hundred rules (ENOBUFS) and leaves unread replies
// behind that confuse the next call. pinhole sends the batch itself and drains
// the replies (see conn.commit).

// txn is one nftables transaction being built: netlink messages, each with a
// description for error messages.
type txn struct {
	enc   *encoder // taken on first use, returned by commit
	msgs  []netlink.Message
	descs []string
	bytes int
}

func newTxn() *txn { return &txn{} }

// encoder turns google/nftables calls into netlink messages without a
// socket. Encoders are pooled: making one costs more than encoding a small
// transaction (mdlayher/netlink seeds a math/rand source for every
// connection, even a fake one), which is most of a one-element Allow.
type encoder struct {
	c       *nftables.Conn
	pending []netlink.Message
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	// Encoding cannot fail to "dial": WithTestDial never touches a socket.
	// Lasting, so that each Flush does not build a new fake connection.
	e.c, _ = nftables.New(nftables.AsLasting(), nftables.WithTestDial(e.capture))
	return e
}}

// capture receives what the encoder would have sent; it answers every read
// with a success ack so that the encoder's Flush returns.
func (e *encoder) capture(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
	}
	e.pending = append(e.pending, req...)
	return nil, nil
}

// release returns the encoder to the pool; the txn is not encoded into again.
func (t *txn) release() {
	if t.enc != nil {
		t.enc.pending = t.enc.pending[:0]
		encoders.Put(t.enc)
		t.enc = nil
	}
}

// do runs encoder calls and appends the messages they produced, described
// by desc.
func (t *txn) do(desc string, f func(c *nftables.Conn) error) error {
	if t.enc == nil {
		t.enc = encoders.Get().(*encoder)
	}
	if err := f(t.enc.c); err != nil {
		t.enc = nil // it may hold a sticky error or queued messages: not reused
		return fmt.Errorf("%s: %w", desc, err)
	}
	if err := t.enc.c.Flush(); err != nil {
		t.enc = nil
		return fmt.Errorf("%s: encode: %w", desc, err)
	}
	// The encoder wraps its messages in batch begin/end; keep the inside.
	p := t.enc.pending
	t.enc.pending = t.enc.pending[:0]
	if len(p) < 2 {
		return nil
	}
	for _, m := range p[1 : len(p)-1] {
		if len(m.Data) > maxMessageBytes {
			// Never let a set element list near the 16-bit attribute limit,
			// where v0.3.0 would lose elements without an error.
			return fmt.Errorf("%s: message of %d bytes exceeds %d", desc, len(m.Data), maxMessageBytes)
		}
		t.msgs = append(t.msgs, m)
		t.descs = append(t.descs, desc)
		t.bytes += nlmsgHdrLen + align4(len(m.Data))
	}
	return nil
}

func (t *txn) len() int { return len(t.msgs) }

const (
	nlmsgHdrLen = 16
	// maxMessageBytes guards against element lists whose nested attribute
	// length (16 bits) would wrap.
	maxMessageBytes = 60 << 10
	// rcvBuf holds the error replies of a failed batch; successful batches
	// produce a single ack.
	rcvBuf = 4 << 20
	// minSndBuf is the send buffer the socket starts with.
	minSndBuf = 1 << 20
)

func align4(n int) int { return (n + 3) &^ 3 }

// conn is the netlink socket transactions are sent over.
type conn struct {
	nl     *netlink.Conn
	rc     syscall.RawConn
	seq    uint32
	sndbuf int
	buf    []byte // receive buffer
	wbuf   []byte // send buffer, kept between commits unless large
	// dirty: replies of an earlier batch may still be queued (its reading
	// stopped early); the next commit drains them first.
	dirty bool
}

// keepWbuf bounds the send buffer kept between commits: Allow's batches fit,
// a big Apply's buffer is left to the garbage collector.
const keepWbuf = 256 << 10

func dialConn(netnsFd int) (*conn, error) {
	cfg := &netlink.Config{}
	if netnsFd > 0 {
		cfg.NetNS = netnsFd
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	c := &conn{nl: nl, buf: make([]byte, 1<<16)}
	// Capped acks do not echo our (possibly 60 KiB) message back; extended
	// acks carry the kernel's explanation of an error. Both are optional.
	_ = nl.SetOption(netlink.CapAcknowledge, true)
	_ = nl.SetOption(netlink.ExtendedAcknowledge, true)
	if c.rc, err = nl.SyscallConn(); err != nil {
		nl.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := c.setsockopt(unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		nl.Close()
		return nil, fmt.Errorf("raise netlink receive buffer: %w", err)
	}
	if err := c.growSndBuf(minSndBuf); err != nil {
		nl.Close()
		return nil, err
	}
	return c, nil
}

func (c *conn) close() error { return c.nl.Close() }

func (c *conn) setsockopt(opt, val int) error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, val)
	})
	return errors.Join(err, serr)
}

// growSndBuf makes one sendmsg of n bytes possible (SO_SNDBUFFORCE ignores
// wmem_max; the kernel doubles the value for its bookkeeping).
func (c *conn) growSndBuf(n int) error {
	if n <= c.sndbuf {
		return nil
	}
	want := max(n+n/4, minSndBuf)
	if err := c.setsockopt(unix.SO_SNDBUFFORCE, want); err != nil {
		return fmt.Errorf("raise netlink send buffer to %d bytes: %w", want, err)
	}
	c.sndbuf = want
	return nil
}

// commit sends the transaction as one batch and reports the kernel's
// verdict. Only the last message asks for an ack: the kernel processes the
// whole batch inside sendmsg and queues an error for every failed message,
// then that ack, so after sendmsg returns everything is in the receive
// queue, and reading stops at the ack (usually the only reply: one recv).
func (c *conn) commit(t *txn) error {
	t.release()
	if t.len() == 0 {
		return nil
	}
	if c.dirty {
		if err := c.drain(nil); err != nil {
			return err
		}
		c.dirty = false
	}
	begin := c.seq + 1
	c.seq += uint32(t.len()) + 2
	last := begin + uint32(t.len())
	buf := c.wbuf[:0]
	if need := t.bytes + 2*(nlmsgHdrLen+4); cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	buf = appendMsg(buf, unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, begin, batchHdr)
	for i, m := range t.msgs {
		flags := uint16(m.Header.Flags) &^ (unix.NLM_F_ACK | unix.NLM_F_ECHO)
		flags |= unix.NLM_F_REQUEST
		if i == t.len()-1 {
			flags |= unix.NLM_F_ACK
		}
		buf = appendMsg(buf, uint16(m.Header.Type), flags, begin+1+uint32(i), m.Data)
	}
	buf = appendMsg(buf, unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, last+1, batchHdr)
	if cap(buf) <= keepWbuf {
		c.wbuf = buf[:0]
	}
	if err := c.growSndBuf(len(buf)); err != nil {
		return err
	}
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err = errors.Join(err, serr); err != nil {
		c.dirty = true
		return fmt.Errorf("send nftables batch of %d messages (%d bytes): %w", t.len(), len(buf), err)
	}
	var (
		errs  []string
		first error
		acked bool
	)
	err = c.read(last, func(seq uint32, errno syscall.Errno, msg string) {
		if errno == 0 {
			if seq == last {
				acked = true
			}
			return
		}
		what := "commit"
		if seq > begin && seq <= last {
			what = t.descs[seq-begin-1]
		}
		if first == nil {
			first = errno
		}
		s := what + ": " + errno.Error()
		if msg != "" {
			s += " (" + msg + ")"
		}
		if len(errs) < 5 {
			errs = append(errs, s)
		}
	})
	if err != nil {
		c.dirty = true
		return fmt.Errorf("read nftables replies: %w (the transaction may or may not have been applied)", err)
	}
	if first != nil {
		return &batchError{err: first, msgs: errs}
	}
	if !acked {
		return errors.New("kernel did not confirm the nftables transaction")
	}
	return nil
}

// batchError is a rejected transaction: the first errno (for errors.Is) and
// what the first few failures were.
type batchError struct {
	err  error
	msgs []string
}

func (e *batchError) Error() string {
	return "nftables transaction rejected: " + strings.Join(e.msgs, "; ")
}

func (e *batchError) Unwrap() error { return e.err }

// batchHdr is the nfgenmsg of batch begin/end: family unspec, version 0,
// resource id = the nftables subsystem.
var batchHdr = []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}

func appendMsg(b []byte, typ, flags uint16, seq uint32, data []byte) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(nlmsgHdrLen+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// drain reads every queued reply without blocking and hands each ack or
// error to f (nil f discards them).
func (c *conn) drain(f func(seq uint32, errno syscall.Errno, msg string)) error {
	return c.read(0, f)
}

// read reads queued replies without blocking, handing each ack or error to
// f (nil f discards them), until the reply to message last (0: until the
// queue is empty). The reply to the last message of a batch is the last
// reply the kernel queues for it.
func (c *conn) read(last uint32, f func(seq uint32, errno syscall.Errno, msg string)) error {
	for {
		var (
			n    int
			rerr error
		)
		err := c.rc.Control(func(fd uintptr) {
			n, _, rerr = unix.Recvfrom(int(fd), c.buf, unix.MSG_DONTWAIT)
		})
		if err != nil {
			return err
		}
		if errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EWOULDBLOCK) {
			return nil
		}
		if errors.Is(rerr, unix.EINTR) {
			continue
		}
		if rerr != nil {
			return rerr
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return fmt.Errorf("parse netlink reply: %w", err)
		}
		done := false
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if last != 0 && m.Header.Seq == last {
				done = true
			}
			if f != nil {
				code := int32(binary.NativeEndian.Uint32(m.Data[:4]))
				f(m.Header.Seq, syscall.Errno(-code), extackMsg(m))
			}
		}
		if done {
			return nil
		}
	}
}

// extackMsg returns the kernel's NLMSGERR_ATTR_MSG text, if any.
func extackMsg(m syscall.NetlinkMessage) string {
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return ""
	}
	off := 4 + nlmsgHdrLen // errno + the original header
	if m.Header.Flags&unix.NLM_F_CAPPED == 0 && len(m.Data) >= off {
		off += align4(int(binary.NativeEndian.Uint32(m.Data[4:8])) - nlmsgHdrLen)
	}
	for off+4 <= len(m.Data) {
		l := int(binary.NativeEndian.Uint16(m.Data[off:]))
		typ := binary.NativeEndian.Uint16(m.Data[off+2:])
		if l < 4 || off+l > len(m.Data) {
			return ""
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			return strings.TrimRight(string(m.Data[off+4:off+l]), "\x00")
		}
		off += align4(l)
	}
	return ""
}
