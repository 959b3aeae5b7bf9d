package learned

import (
	"net/netip"
	"slices"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// A cap evicts entries whose elements are in the kernel: the store records
// their keys, and Released returns the elements to revoke, so that the
// kernel holds what the store holds and not more until a timeout.

// maxReleased bounds the addresses waiting for Released.
const maxReleased = 1 << 16

type releasedAddr struct {
	app  string
	addr netip.Addr
}

// portKey is an element's protocol and port; the zero key is "any port".
type portKey struct {
	proto policy.Proto
	port  uint16
}

// evictLocked removes an entry for a cap and remembers the kernel keys its
// name opened for its address.
func (s *Store) evictLocked(a *appState, e *entry) {
	if e.addr.IsValid() {
		k := releasedAddr{a.name, e.addr}
		keys := s.released[k]
		if keys == nil && len(s.released) >= maxReleased {
			s.removeLocked(a, e) // nobody collects them: leave it to the timeout
			return
		}
		if keys == nil {
			keys = map[portKey]struct{}{}
			s.released[k] = keys
		}
		if e.name.ports.Any() {
			keys[portKey{}] = struct{}{}
		} else {
			for _, p := range e.name.ports {
				keys[portKey{p.Proto, p.Port}] = struct{}{}
			}
		}
		s.hasReleased.Store(true)
	}
	s.removeLocked(a, e)
}

// needs reports whether an entry of the address opens the key.
func (ar *addrRec) needs(proto policy.Proto, port uint16) bool {
	for _, e := range ar.entries {
		if e.name.ports.Any() {
			if proto == 0 && port == 0 {
				return true
			}
		} else if (proto != 0 || port != 0) && slices.Contains(e.name.ports, policy.PortSpec{Proto: proto, Port: port}) {
			return true
		}
	}
	return false
}

// HasReleased reports, without locking, whether evictions left elements
// that Released may return.
func (s *Store) HasReleased() bool { return s.hasReleased.Load() }

// Released returns the elements of evicted entries that no remaining entry
// of the same app needs (the address may still be learned for another name,
// maybe on other ports), sorted, and forgets them. The kernel's
// acknowledgement of those keys is dropped too, so that a later answer
// inserts them again. Call it in the same order as the inserts (the proxy
// does, from its commit goroutine) and revoke what it returns.
func (s *Store) Released() []Element {
	if !s.hasReleased.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Element
	for k, keys := range s.released {
		var ar *addrRec
		if a := s.apps[k.app]; a != nil {
			ar = a.addrs[k.addr]
		}
		for pk := range keys {
			if ar != nil && ar.needs(pk.proto, pk.port) {
				continue
			}
			out = append(out, Element{App: k.app, Addr: k.addr, Proto: pk.proto, Port: pk.port})
			if ar != nil {
				ar.sent = slices.DeleteFunc(ar.sent, func(sk sentKey) bool { return sk.proto == pk.proto && sk.port == pk.port })
			}
		}
	}
	clear(s.released)
	s.hasReleased.Store(false)
	sortElements(out)
	return out
}
