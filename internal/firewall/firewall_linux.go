package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/netns"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// maxAllowBytes bounds one Flush of Allow or Revoke; larger updates are split
// into several transactions, each of which refreshes whole chunks.
const maxAllowBytes = 8 << 20

// Firewall owns pinhole's table in one network namespace. All methods are
// safe for concurrent use; netlink work is serialised on one socket.
type Firewall struct {
	log  *slog.Logger
	opts Options

	mu     sync.Mutex
	c      *conn          // writes; nil when read-only
	rd     *nftables.Conn // reads
	m      *model         // what the last Apply installed
	sets   map[string]*nftables.Set
	nextID uint32
	closed bool
	// inPlace: the kernel refreshes an element's expiry on a plain add
	// (see timeoutUpdate); tests turn it off to check the fallback.
	inPlace bool
}

// New opens the netlink sockets. Unless opts.ReadOnly or
// opts.AllowInitialNetns, it refuses to work in the machine's own network
// namespace.
func New(opts Options) (*Firewall, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.CgroupID == nil {
		opts.CgroupID = cgroup.ID
	}
	fd := opts.NetNSFd
	if fd < 0 {
		fd = 0
	}
	if !opts.ReadOnly && !opts.AllowInitialNetns {
		initial, err := isInitialNetns(fd)
		if err != nil {
			return nil, fmt.Errorf("check network namespace: %w", err)
		}
		if initial {
			return nil, errors.New("refusing to program the machine's own network namespace without AllowInitialNetns")
		}
	}
	f := &Firewall{log: log, opts: opts, inPlace: timeoutUpdate()}
	var ropts []nftables.ConnOption
	ropts = append(ropts, nftables.AsLasting())
	if fd > 0 {
		ropts = append(ropts, nftables.WithNetNSFd(fd))
	}
	rd, err := nftables.New(ropts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	f.rd = rd
	if !opts.ReadOnly {
		if f.c, err = dialConn(fd); err != nil {
			rd.CloseLasting()
			return nil, err
		}
	}
	return f, nil
}

// isInitialNetns reports whether fd (or, for 0, the caller) is in the
// machine's own network namespace.
func isInitialNetns(fd int) (bool, error) {
	if fd <= 0 {
		return netns.IsInitial()
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	init, err := netns.Of(1)
	if errors.Is(err, os.ErrPermission) {
		// PID 1 may be undumpable; kthreadd (PID 2) lives in the initial
		// namespace too.
		if stat, rerr := os.ReadFile("/proc/2/stat"); rerr == nil && strings.HasPrefix(string(stat), "2 (kthreadd) ") {
			init, err = netns.Of(2)
		}
	}
	if err != nil {
		return false, err
	}
	return init == netns.ID{Dev: st.Dev, Ino: st.Ino}, nil
}

func (f *Firewall) writable() error {
	switch {
	case f.closed:
		return os.ErrClosed
	case f.c == nil:
		return ErrReadOnly
	}
	return nil
}

// Apply installs the whole table for p in one transaction, replacing any
// table of the same name (a previous run's, even a crashed one's), together
// with learned: elements with their remaining timeouts, so that a reload
// keeps what was learned. Elements of apps that are no longer in p are
// dropped. At no moment is the namespace without a complete table.
func (f *Firewall) Apply(p *policy.Policy, learned []Element) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return err
	}
	start := time.Now()
	m, err := newModel(p, f.opts.CgroupID, f.log)
	if err != nil {
		return fmt.Errorf("apply ruleset: %w", err)
	}
	keep, dropped, err := m.learnedElements(learned)
	if err != nil {
		return fmt.Errorf("apply ruleset: %w", err)
	}
	if dropped > 0 {
		f.log.Info("dropped learned elements of apps no longer in the policy", "count", dropped)
	}
	t := newTxn()
	sets, err := buildTable(t, m, keep, &f.nextID)
	if err != nil {
		return fmt.Errorf("apply ruleset: build: %w", err)
	}
	built := time.Since(start)
	if err := f.c.commit(t); err != nil {
		return fmt.Errorf("apply ruleset: %w", err)
	}
	f.m, f.sets = m, sets
	f.log.Debug("firewall applied", "messages", t.len(), "bytes", t.bytes, "apps", len(p.Apps),
		"elements", len(m.literals)+len(keep), "build", built, "took", time.Since(start))
	return nil
}

// Allow adds elements, or refreshes them to exactly the given timeout if
// they are there already (the caller passes the longest remaining lifetime
// when several names share an address). Elements that are permanent because
// the manifest lists the address literally are left alone. Allow returns once
// the kernel has committed the change.
func (f *Firewall) Allow(elems []Element) error {
	return f.update("allow", elems, true)
}

// Revoke removes elements; absent ones are ignored, and permanent (literal)
// ones are kept.
func (f *Firewall) Revoke(elems []Element) error {
	return f.update("revoke", elems, false)
}

func (f *Firewall) update(op string, elems []Element, allow bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return err
	}
	if f.m == nil {
		return fmt.Errorf("%s: %w", op, ErrNoPolicy)
	}
	todo := make([]Element, 0, len(elems))
	// A key twice in one batch would be deleted twice (ENOENT): keep one,
	// with the longest timeout.
	idx := make(map[elemKey]int, len(elems))
	for _, e := range elems {
		e, err := f.m.checkElement(e)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		k := e.key()
		if f.m.permanent[k] {
			continue
		}
		if !allow {
			e.Timeout = 0
		}
		if i, ok := idx[k]; ok {
			if e.Timeout == 0 || (todo[i].Timeout != 0 && e.Timeout > todo[i].Timeout) {
				todo[i].Timeout = e.Timeout
			}
			continue
		}
		idx[k] = len(todo)
		todo = append(todo, e)
	}
	return f.flushUpdate(op, todo, allow)
}

// flushUpdate sends elems in as few transactions as the size bound allows.
func (f *Firewall) flushUpdate(op string, elems []Element, allow bool) error {
	t := newTxn()
	flush := func() error {
		if err := f.c.commit(t); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		t = newTxn()
		return nil
	}
	// Group per set so that chunks are full; each group goes in chunks.
	// Most calls carry the elements of one set.
	var bySet map[string][]Element
	var order []string
	if len(elems) > 0 && allSameSet(elems) {
		order = []string{appSet(elems[0].App, elems[0].kindOf())}
		bySet = map[string][]Element{order[0]: elems}
	} else {
		bySet = map[string][]Element{}
		for _, e := range elems {
			name := appSet(e.App, e.kindOf())
			if _, ok := bySet[name]; !ok {
				order = append(order, name)
			}
			bySet[name] = append(bySet[name], e)
		}
	}
	for _, name := range order {
		list := bySet[name]
		if f.sets[name] == nil {
			return fmt.Errorf("%s: no set %s", op, name)
		}
		if !allow {
			s := f.sets[name]
			ses := make([]nftables.SetElement, len(list))
			for i, e := range list {
				ses[i] = e.setElement()
			}
			for _, chunk := range chunkElems(s, ses) {
				if err := removeElems(t, s, chunk, fmt.Sprintf("remove %d elements of %s", len(chunk), name)); err != nil {
					return fmt.Errorf("%s: %w", op, err)
				}
			}
		} else {
			fields := withTimeout
			if f.inPlace {
				fields |= withExpiration
			}
			for _, chunk := range chunkRaw(list, fields) {
				f.refresh(t, name, chunk, fields)
				if t.bytes >= maxAllowBytes {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if t.bytes >= maxAllowBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// refresh adds chunk to set name, or sets the expiry of the elements that
// are there to exactly their timeout. With in-place updates one add does
// both; otherwise, and for permanent elements (an existing element's
// timeout is only dropped by re-creating it), the batch adds, deletes and
// adds again.
func (f *Firewall) refresh(t *txn, name string, chunk []Element, fields elemFields) {
	const flags = netlink.Request | netlink.Create
	desc := "refresh " + strconv.Itoa(len(chunk)) + " elements of " + name
	add := elemMsg(name, chunk, fields)
	if fields&withExpiration != 0 && !hasPermanent(chunk) {
		t.addRaw(desc, msgNewSetElem, flags, add)
		return
	}
	t.addRaw(desc, msgNewSetElem, flags, add)
	t.addRaw(desc, msgDelSetElem, netlink.Request, elemMsg(name, chunk, 0))
	t.addRaw(desc, msgNewSetElem, flags, add)
}

func allSameSet(elems []Element) bool {
	app, kind := elems[0].App, elems[0].kindOf()
	for _, e := range elems[1:] {
		if e.App != app || e.kindOf() != kind {
			return false
		}
	}
	return true
}

func hasPermanent(elems []Element) bool {
	for _, e := range elems {
		if e.Timeout == 0 {
			return true
		}
	}
	return false
}

// SetCgroupID records that app's cgroup now has id (it was created or
// recreated, which gives it a new inode) and updates the dispatch maps. The
// old id's entries are removed in the same transaction.
func (f *Firewall) SetCgroupID(app string, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return err
	}
	if f.m == nil {
		return fmt.Errorf("set cgroup id: %w", ErrNoPolicy)
	}
	ident := f.m.byName[app]
	if ident == nil || ident.kind != policy.ByCgroup {
		return fmt.Errorf("set cgroup id: no app %q identified by cgroup", app)
	}
	if id == 0 {
		return fmt.Errorf("set cgroup id of %q: id 0", app)
	}
	if id == ident.cgID {
		return nil
	}
	t := newTxn()
	cg := f.sets[cgSet(app)]
	srv := f.sets[setSrvCg(ident.level)]
	old, nu := *ident, *ident
	nu.cgID = id
	if old.cgID != 0 {
		if err := removeElems(t, cg, []nftables.SetElement{{Key: ne64(old.cgID)}}, "remove old cgroup id"); err != nil {
			return err
		}
		if srv != nil && hasServerPorts(old.app) {
			if err := removeElems(t, srv, cgSrvElems(&old), "remove old cgroup server ports"); err != nil {
				return err
			}
		}
	}
	err := t.do("add cgroup id to "+cg.Name, func(c *nftables.Conn) error {
		if err := c.SetAddElements(cg, []nftables.SetElement{{Key: ne64(id)}}); err != nil {
			return err
		}
		if srv != nil && hasServerPorts(nu.app) {
			return c.SetAddElements(srv, cgSrvElems(&nu))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := f.c.commit(t); err != nil {
		return fmt.Errorf("set cgroup id of %q: %w", app, err)
	}
	ident.cgID = id
	return nil
}

// Elements reads app's address sets back from the kernel. Timeout is the
// time left (0 for permanent elements).
func (f *Firewall) Elements(app string) ([]Element, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, os.ErrClosed
	}
	var out []Element
	for _, k := range setKinds {
		s := newAppSet(app, k)
		s.Table = table
		got, err := f.rd.GetSetElements(s)
		if err != nil {
			f.resetReader()
			return nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		for _, se := range got {
			e, err := decodeElement(app, k, se)
			if err != nil {
				return nil, fmt.Errorf("read set %s: %w", s.Name, err)
			}
			out = append(out, e)
		}
	}
	return out, nil
}

func decodeElement(app string, k setKind, se nftables.SetElement) (Element, error) {
	e := Element{App: app, Timeout: se.Expires}
	if se.Timeout == 0 {
		e.Timeout = 0
	}
	var addrLen int
	switch k {
	case setV4, setV4Port:
		addrLen = 4
	default:
		addrLen = 16
	}
	want := addrLen
	if k == setV4Port || k == setV6Port {
		want += 8
	}
	if len(se.Key) != want {
		return e, fmt.Errorf("element key of %d bytes, want %d", len(se.Key), want)
	}
	e.Addr, _ = netip.AddrFromSlice(se.Key[:addrLen])
	if want > addrLen {
		e.Proto = policy.Proto(se.Key[addrLen])
		e.Port = uint16(se.Key[addrLen+4])<<8 | uint16(se.Key[addrLen+5])
	}
	return e, nil
}

// resetReader replaces the read socket after an error, which may have left
// unread replies behind.
func (f *Firewall) resetReader() {
	f.rd.CloseLasting()
	var ropts []nftables.ConnOption
	ropts = append(ropts, nftables.AsLasting())
	if f.opts.NetNSFd > 0 {
		ropts = append(ropts, nftables.WithNetNSFd(f.opts.NetNSFd))
	}
	if rd, err := nftables.New(ropts...); err == nil {
		f.rd = rd
	}
}

// Remove deletes pinhole's table, if there is one (uninstall). Traffic is
// then no longer filtered by pinhole.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writable(); err != nil {
		return err
	}
	t := newTxn()
	err := t.do("delete table inet "+TableName, func(c *nftables.Conn) error {
		c.AddTable(table)
		c.DelTable(table)
		return nil
	})
	if err == nil {
		err = f.c.commit(t)
	}
	if err != nil {
		return fmt.Errorf("remove table: %w", err)
	}
	f.m, f.sets = nil, nil
	return nil
}

// Close releases the sockets. The table stays in the kernel: pinhole fails
// closed.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.rd.CloseLasting()
	if f.c != nil {
		err = errors.Join(err, f.c.close())
	}
	return err
}
