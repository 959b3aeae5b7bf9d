package dnsproxy

import (
	"log/slog"
	"sync/atomic"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
)

// Revoker removes set elements from the kernel. *firewall.Firewall
// implements it; when the Inserter does too, the elements of entries the
// learned store's caps evict are revoked, so the kernel holds what the
// store holds.
type Revoker interface {
	Revoke(elems []firewall.Element) error
}

// revokingInserter is the Inserter the committer uses: after each insert it
// revokes what evictions released. It runs in the commit goroutine, so a
// revocation never overtakes an insert of the same key that the store
// decided on later.
type revokingInserter struct {
	ins   Inserter
	rev   Revoker // nil: evicted elements stay until their timeout
	store *learned.Store
	log   *slog.Logger

	revoked atomic.Uint64
	errors  atomic.Uint64
}

func (r *revokingInserter) Allow(elems []firewall.Element) error {
	var err error
	if len(elems) > 0 {
		err = r.ins.Allow(elems)
	}
	if rel := r.store.Released(); len(rel) > 0 && r.rev != nil {
		if rerr := r.rev.Revoke(rel); rerr != nil {
			r.errors.Add(1)
			r.log.Warn("revoke evicted set elements; they stay until their timeout", "elements", len(rel), "err", rerr)
		} else {
			r.revoked.Add(uint64(len(rel)))
		}
	}
	return err
}
