// Package learned keeps what each app has resolved: host name -> addresses
// with an expiry, bounded by caps, persisted across restarts, and turned into
// the firewall's set elements.
package learned

import (
	"container/heap"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Element is one kernel set element: App may reach Addr on Proto/Port
// (Port 0: any port and protocol) for Timeout.
type Element = firewall.Element

// Clock tells the time; tests give a fake one or run in a synctest bubble.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Limits bound the lifetime and number of learned entries.
type Limits struct {
	// TTLFloor and TTLCeiling clamp the TTL of an answer; Grace is added
	// after clamping, for apps that keep using an address a little past its
	// TTL. A zero Ceiling means no ceiling.
	TTLFloor   time.Duration
	TTLCeiling time.Duration
	Grace      time.Duration
	// MaxPerApp caps the entries (name, address pairs and SRV target grants)
	// of one app; MaxPerName the addresses of one name. When a cap is hit the
	// entry closest to expiring is evicted and counted. Zero means the
	// defaults below.
	MaxPerApp  int
	MaxPerName int
}

// Defaults for zero Limits fields.
const (
	DefaultMaxPerApp  = 10000
	DefaultMaxPerName = 256
	// MinTimeout is the shortest lifetime any element gets, so that an
	// answer with TTL 0 still lets the app connect once.
	MinTimeout = time.Second
	// minRemaining: an entry with less left than this is not worth a
	// kernel element any more.
	minRemaining = 100 * time.Millisecond
)

// LimitsFrom takes the limits from the policy's DNS settings.
func LimitsFrom(d policy.DNS) Limits {
	return Limits{TTLFloor: d.TTLFloor, TTLCeiling: d.TTLCeiling, Grace: d.Grace, MaxPerApp: d.MaxPerApp, MaxPerName: d.MaxPerName}
}

func (l Limits) withDefaults() Limits {
	if l.MaxPerApp <= 0 {
		l.MaxPerApp = DefaultMaxPerApp
	}
	if l.MaxPerName <= 0 {
		l.MaxPerName = DefaultMaxPerName
	}
	return l
}

// Lifetime is how long an answer with this TTL keeps its addresses open.
func (l Limits) Lifetime(ttl time.Duration) time.Duration {
	if ttl < l.TTLFloor {
		ttl = l.TTLFloor
	}
	if l.TTLCeiling > 0 && ttl > l.TTLCeiling {
		ttl = l.TTLCeiling
	}
	d := ttl + l.Grace
	if d < MinTimeout {
		d = MinTimeout
	}
	return d
}

// maxLifetime bounds restored entries, in case the wall clock went back.
func (l Limits) maxLifetime() time.Duration {
	if l.TTLCeiling <= 0 {
		return 0
	}
	return l.Lifetime(l.TTLCeiling)
}

// Options configure a Store.
type Options struct {
	Limits Limits
	// Clock, if non-nil, replaces the system clock.
	Clock Clock
	// StateDir, if not empty, is where Restore reads and the store writes
	// its snapshot and journal.
	StateDir string
	Logger   *slog.Logger
}

// Learning is one answer's worth of addresses for one name of one app.
type Learning struct {
	App string
	// Name is the canonical name the addresses belong to: the name the app
	// asked for, or an SRV target.
	Name string
	// Via is the allowed name whose answer led to Name (the DNS-SD service
	// or instance for SRV targets); empty when Name matched a rule itself.
	Via string
	// Ports are the ports the policy allows for Name (or Via); nil is any.
	Ports policy.Ports
	Addrs []AddrTTL
	// Grant, if positive, allows the app to resolve Name itself for this
	// TTL (clamped like an address TTL), as SRV targets need.
	Grant time.Duration
}

// AddrTTL is one address of an answer with the TTL it came with.
type AddrTTL struct {
	Addr netip.Addr
	TTL  time.Duration
}

// Store is the learned state of every app. It is safe for concurrent use.
type Store struct {
	lim   Limits
	clock Clock
	log   *slog.Logger
	dir   string

	mu         sync.Mutex
	apps       map[string]*appState
	journal    *journal
	compacting bool
	stats      storeStats
	// released holds the kernel keys of evicted entries until Released
	// hands out those no other entry needs; hasReleased says it is not
	// empty, without the lock.
	released    map[releasedAddr]map[portKey]struct{}
	hasReleased atomic.Bool

	bg        sync.WaitGroup // background compaction
	compactMu sync.Mutex     // serialises Compact
}

type storeStats struct {
	evictPerApp  map[string]uint64
	evictPerName map[string]uint64
}

type appState struct {
	name  string
	names map[string]*nameRec
	addrs map[netip.Addr]*addrRec
	byExp entryHeap
}

type nameRec struct {
	name  string
	via   string
	ports policy.Ports
	grant *entry // non-nil while the name itself is allowed (SRV target)
	addrs []*entry
}

// entry is one learned (name, address) pair, or a grant when addr is the
// zero Addr.
type entry struct {
	name    *nameRec
	addr    netip.Addr
	expires time.Time
	index   int // in appState.byExp
}

type addrRec struct {
	entries []*entry
	sent    []sentKey
}

// sentKey is an element the kernel acknowledged, with its expiry.
type sentKey struct {
	proto   policy.Proto
	port    uint16
	expires time.Time
}

// New returns an empty store. Call Restore to load the saved state.
func New(opts Options) *Store {
	s := &Store{
		lim:      opts.Limits.withDefaults(),
		clock:    opts.Clock,
		log:      opts.Logger,
		dir:      opts.StateDir,
		apps:     make(map[string]*appState),
		stats:    storeStats{evictPerApp: map[string]uint64{}, evictPerName: map[string]uint64{}},
		released: make(map[releasedAddr]map[portKey]struct{}),
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Now is the store's clock, which Acknowledge times must come from.
func (s *Store) Now() time.Time { return s.clock.Now() }

// Limits returns the store's limits after defaults.
func (s *Store) Limits() Limits { return s.lim }

// SetLimits changes the limits for entries learned from now on, as a reload
// does. Existing entries keep their expiry; caps apply at the next insert.
func (s *Store) SetLimits(l Limits) {
	s.mu.Lock()
	s.lim = l.withDefaults()
	s.mu.Unlock()
}

func (s *Store) app(name string) *appState {
	a := s.apps[name]
	if a == nil {
		a = &appState{name: name, names: map[string]*nameRec{}, addrs: map[netip.Addr]*addrRec{}}
		s.apps[name] = a
	}
	return a
}

// Learn records answers and returns the set elements the kernel needs so
// that every address is open for its new lifetime. An element whose key the
// kernel already holds with (nearly) as long a lifetime is left out. Call
// Acknowledge with the elements once the kernel accepted them.
func (s *Store) Learn(ls ...Learning) []Element {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Element
	for _, l := range ls {
		out = s.learnLocked(now, l, out)
	}
	return out
}

func (s *Store) learnLocked(now time.Time, l Learning, out []Element) []Element {
	if l.App == "" || l.Name == "" {
		return out
	}
	a := s.app(l.App)
	s.expireLocked(a, now)
	n := a.names[l.Name]
	if n == nil {
		n = &nameRec{name: l.Name}
		a.names[l.Name] = n
	}
	n.via = l.Via
	n.ports = slices.Clone(l.Ports)
	if l.Grant > 0 {
		exp := now.Add(s.lim.Lifetime(l.Grant))
		if n.grant == nil {
			s.makeRoomLocked(a)
			a.names[n.name] = n
			n.grant = &entry{name: n, expires: exp}
			heap.Push(&a.byExp, n.grant)
			s.journalLocked(l.App, n, n.grant)
		} else if exp.After(n.grant.expires) {
			s.setExpiresLocked(a, now, n.grant, exp)
		}
	}
	for _, at := range l.Addrs {
		addr := at.Addr.Unmap()
		if !addr.IsValid() {
			continue
		}
		exp := now.Add(s.lim.Lifetime(at.TTL))
		e := a.find(n, addr)
		if e == nil {
			if len(n.addrs) >= s.lim.MaxPerName {
				old := n.oldest()
				s.evictLocked(a, old)
				s.stats.evictPerName[l.App]++
			}
			s.makeRoomLocked(a)
			a.names[n.name] = n // an eviction may have emptied and unlinked it
			e = &entry{name: n, addr: addr, expires: exp}
			n.addrs = append(n.addrs, e)
			heap.Push(&a.byExp, e)
			ar := a.addrs[addr]
			if ar == nil {
				ar = &addrRec{}
				a.addrs[addr] = ar
			}
			ar.entries = append(ar.entries, e)
			s.journalLocked(l.App, n, e)
		} else if exp.After(e.expires) {
			s.setExpiresLocked(a, now, e, exp)
		}
		out = s.elementsForLocked(a, addr, n.ports, now, out)
	}
	if n.grant == nil && len(n.addrs) == 0 {
		delete(a.names, l.Name)
	}
	return out
}

// setExpiresLocked moves an entry's expiry later and journals it when the
// move is big enough to matter after a restart.
func (s *Store) setExpiresLocked(a *appState, now time.Time, e *entry, exp time.Time) {
	old := e.expires
	e.expires = exp
	heap.Fix(&a.byExp, e.index)
	if exp.Sub(old) > slack(exp.Sub(now)) {
		s.journalLocked(a.name, e.name, e)
	}
}

// slack is how much earlier than wanted the kernel element may expire
// before a refresh is worth a netlink transaction: an eighth of its
// lifetime, at most five seconds.
func slack(lifetime time.Duration) time.Duration {
	d := lifetime / 8
	if d > 5*time.Second {
		d = 5 * time.Second
	}
	return d
}

// elementsForLocked appends the elements for addr on ports, each with the
// longest remaining lifetime of any of the app's names that open the same
// key, unless the kernel already has that key for long enough.
func (s *Store) elementsForLocked(a *appState, addr netip.Addr, ports policy.Ports, now time.Time, out []Element) []Element {
	ar := a.addrs[addr]
	if ar == nil {
		return out
	}
	emit := func(proto policy.Proto, port uint16) {
		var best time.Time
		for _, e := range ar.entries {
			if e.name.ports.Any() {
				if proto != 0 || port != 0 {
					continue
				}
			} else if proto == 0 && port == 0 || !slices.Contains(e.name.ports, policy.PortSpec{Proto: proto, Port: port}) {
				continue
			}
			if e.expires.After(best) {
				best = e.expires
			}
		}
		if !best.After(now) {
			return
		}
		for _, sk := range ar.sent {
			if sk.proto == proto && sk.port == port && !sk.expires.Before(best.Add(-slack(best.Sub(now)))) {
				return
			}
		}
		out = append(out, Element{App: a.name, Addr: addr, Proto: proto, Port: port, Timeout: best.Sub(now)})
	}
	if ports.Any() {
		emit(0, 0)
	} else {
		for _, p := range ports {
			emit(p.Proto, p.Port)
		}
	}
	return out
}

// Acknowledge records that the kernel accepted elems, which were computed
// no earlier than at, so later answers need not refresh them too soon.
func (s *Store) Acknowledge(elems []Element, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, el := range elems {
		a := s.apps[el.App]
		if a == nil {
			continue
		}
		ar := a.addrs[el.Addr]
		if ar == nil {
			continue
		}
		if !ar.needs(el.Proto, el.Port) {
			continue // its entry was evicted meanwhile; Released revokes it
		}
		exp := at.Add(el.Timeout)
		found := false
		for i := range ar.sent {
			if ar.sent[i].proto == el.Proto && ar.sent[i].port == el.Port {
				if exp.After(ar.sent[i].expires) {
					ar.sent[i].expires = exp
				}
				found = true
				break
			}
		}
		if !found {
			ar.sent = append(ar.sent, sentKey{proto: el.Proto, port: el.Port, expires: exp})
		}
	}
}

// Forget drops what Acknowledge recorded, so every later answer refreshes
// the kernel again; call it when the kernel's sets were replaced by
// something other than Elements.
func (s *Store) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.apps {
		for _, ar := range a.addrs {
			ar.sent = nil
		}
	}
}

// find returns n's entry for addr, looking through the address's entries,
// which are few, rather than the name's, which may be many.
func (a *appState) find(n *nameRec, addr netip.Addr) *entry {
	ar := a.addrs[addr]
	if ar == nil {
		return nil
	}
	for _, e := range ar.entries {
		if e.name == n {
			return e
		}
	}
	return nil
}

func (n *nameRec) oldest() *entry {
	var o *entry
	for _, e := range n.addrs {
		if o == nil || e.expires.Before(o.expires) {
			o = e
		}
	}
	return o
}

// makeRoomLocked evicts the app's entries closest to expiring until one
// more fits under the cap.
func (s *Store) makeRoomLocked(a *appState) {
	for len(a.byExp) >= s.lim.MaxPerApp {
		s.evictLocked(a, a.byExp[0])
		s.stats.evictPerApp[a.name]++
	}
}

// expireLocked removes the app's entries that expired before now.
func (s *Store) expireLocked(a *appState, now time.Time) int {
	n := 0
	for len(a.byExp) > 0 && !a.byExp[0].expires.After(now) {
		s.removeLocked(a, a.byExp[0])
		n++
	}
	return n
}

func (s *Store) removeLocked(a *appState, e *entry) {
	heap.Remove(&a.byExp, e.index)
	n := e.name
	if !e.addr.IsValid() {
		n.grant = nil
	} else {
		n.addrs = deleteEntry(n.addrs, e)
		if ar := a.addrs[e.addr]; ar != nil {
			ar.entries = deleteEntry(ar.entries, e)
			if len(ar.entries) == 0 {
				delete(a.addrs, e.addr)
			}
		}
	}
	if n.grant == nil && len(n.addrs) == 0 && a.names[n.name] == n {
		delete(a.names, n.name)
	}
}

func deleteEntry(es []*entry, e *entry) []*entry {
	for i, x := range es {
		if x == e {
			last := len(es) - 1
			es[i] = es[last]
			es[last] = nil
			return es[:last]
		}
	}
	return es
}

// Sweep removes every expired entry and returns how many it removed.
func (s *Store) Sweep() int {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name, a := range s.apps {
		n += s.expireLocked(a, now)
		if len(a.byExp) == 0 {
			delete(s.apps, name)
		}
	}
	return n
}

// Granted reports whether app may resolve name because an earlier answer
// (an SRV target) allowed it, and through which allowed name.
func (s *Store) Granted(app, name string) (via string, ok bool) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil {
		return "", false
	}
	n := a.names[name]
	if n == nil || n.grant == nil || !n.grant.expires.After(now) {
		return "", false
	}
	return n.via, true
}

// Names returns the names app learned addr for, sorted, for the audit.
func (s *Store) Names(app string, addr netip.Addr) []string {
	now := s.clock.Now()
	addr = addr.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil {
		return nil
	}
	ar := a.addrs[addr]
	if ar == nil {
		return nil
	}
	var out []string
	for _, e := range ar.entries {
		if e.expires.After(now) {
			out = append(out, e.name.name)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// NameEntry is one learned name of an app, for the API.
type NameEntry struct {
	Name string `json:"name"`
	Via  string `json:"via,omitempty"`
	// AllowedUntil is set while the name itself is allowed by an SRV answer.
	AllowedUntil time.Time   `json:"allowed_until,omitzero"`
	Addrs        []AddrEntry `json:"addresses"`
}

// AddrEntry is one learned address and when it closes.
type AddrEntry struct {
	Addr    netip.Addr `json:"address"`
	Expires time.Time  `json:"expires"`
}

// Snapshot returns app's unexpired names, sorted by name, addresses sorted.
func (s *Store) Snapshot(app string) []NameEntry {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil {
		return nil
	}
	out := make([]NameEntry, 0, len(a.names))
	for _, n := range a.names {
		ne := NameEntry{Name: n.name, Via: n.via, Addrs: []AddrEntry{}}
		if n.grant != nil && n.grant.expires.After(now) {
			ne.AllowedUntil = n.grant.expires
		}
		for _, e := range n.addrs {
			if e.expires.After(now) {
				ne.Addrs = append(ne.Addrs, AddrEntry{Addr: e.addr, Expires: e.expires})
			}
		}
		if len(ne.Addrs) == 0 && ne.AllowedUntil.IsZero() {
			continue
		}
		slices.SortFunc(ne.Addrs, func(x, y AddrEntry) int { return x.Addr.Compare(y.Addr) })
		out = append(out, ne)
	}
	slices.SortFunc(out, func(x, y NameEntry) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// AppStats counts one app's learned state.
type AppStats struct {
	App string `json:"app"`
	// Entries counts (name, address) pairs and grants; Addresses the
	// distinct addresses; Names the distinct names.
	Entries   int `json:"entries"`
	Addresses int `json:"addresses"`
	Names     int `json:"names"`
	// EvictedPerApp and EvictedPerName count entries evicted by each cap.
	EvictedPerApp  uint64 `json:"evicted_per_app"`
	EvictedPerName uint64 `json:"evicted_per_name"`
}

// Stats returns per-app counts sorted by app name, including apps that had
// evictions and now hold nothing.
func (s *Store) Stats() []AppStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []AppStats
	add := func(app string) {
		if seen[app] {
			return
		}
		seen[app] = true
		st := AppStats{App: app, EvictedPerApp: s.stats.evictPerApp[app], EvictedPerName: s.stats.evictPerName[app]}
		if a := s.apps[app]; a != nil {
			st.Entries, st.Addresses, st.Names = len(a.byExp), len(a.addrs), len(a.names)
		}
		out = append(out, st)
	}
	for app := range s.apps {
		add(app)
	}
	for app := range s.stats.evictPerApp {
		add(app)
	}
	for app := range s.stats.evictPerName {
		add(app)
	}
	slices.SortFunc(out, func(x, y AppStats) int { return strings.Compare(x.App, y.App) })
	return out
}

// Elements computes the kernel elements for policy p at time now, as
// firewall.Apply needs on start and reload: one per address and allowed
// port of every unexpired entry whose name (or Via) p still allows, with
// the longest remaining lifetime per key. It changes nothing; see Retain.
func (s *Store) Elements(p *policy.Policy, now time.Time) []Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	type key struct {
		app   string
		addr  netip.Addr
		proto policy.Proto
		port  uint16
	}
	best := map[key]time.Time{}
	max := s.lim.maxLifetime()
	for appName, a := range s.apps {
		app := p.App(appName)
		if app == nil {
			continue
		}
		for _, n := range a.names {
			ports, ok := portsFor(app, n)
			if !ok {
				continue
			}
			for _, e := range n.addrs {
				exp := e.expires
				if max > 0 && exp.Sub(now) > max {
					exp = now.Add(max)
				}
				if exp.Sub(now) < minRemaining {
					continue
				}
				put := func(proto policy.Proto, port uint16) {
					k := key{appName, e.addr, proto, port}
					if exp.After(best[k]) {
						best[k] = exp
					}
				}
				if ports.Any() {
					put(0, 0)
				}
				for _, ps := range ports {
					put(ps.Proto, ps.Port)
				}
			}
		}
	}
	out := make([]Element, 0, len(best))
	for k, exp := range best {
		out = append(out, Element{App: k.app, Addr: k.addr, Proto: k.proto, Port: k.port, Timeout: exp.Sub(now)})
	}
	sortElements(out)
	return out
}

// portsFor is what p allows for a learned name: its own match, or the match
// of the name it was learned through.
func portsFor(app *policy.App, n *nameRec) (policy.Ports, bool) {
	name := n.name
	if n.via != "" {
		name = n.via
	}
	m, ok := app.MatchName(name)
	if !ok {
		return nil, false
	}
	return m.Ports, true
}

func sortElements(es []Element) {
	slices.SortFunc(es, func(x, y Element) int {
		if c := strings.Compare(x.App, y.App); c != 0 {
			return c
		}
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		if x.Proto != y.Proto {
			return int(x.Proto) - int(y.Proto)
		}
		return int(x.Port) - int(y.Port)
	})
}

// Retain drops the apps and names p no longer allows and takes their ports
// from p, as after a reload. It returns how many entries it dropped.
func (s *Store) Retain(p *policy.Policy) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := 0
	for appName, a := range s.apps {
		app := p.App(appName)
		for _, n := range a.names {
			var ports policy.Ports
			ok := false
			if app != nil {
				ports, ok = portsFor(app, n)
			}
			if ok {
				n.ports = ports
				continue
			}
			for len(n.addrs) > 0 {
				s.removeLocked(a, n.addrs[0])
				dropped++
			}
			if n.grant != nil {
				s.removeLocked(a, n.grant)
				dropped++
			}
		}
		if len(a.byExp) == 0 {
			delete(s.apps, appName)
		}
	}
	return dropped
}

// entryHeap orders entries by expiry, soonest first.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.index = -1
	*h = old[:n-1]
	return e
}

func (e *entry) String() string {
	if !e.addr.IsValid() {
		return fmt.Sprintf("grant %s until %s", e.name.name, e.expires.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s %s until %s", e.name.name, e.addr, e.expires.Format(time.RFC3339))
}
