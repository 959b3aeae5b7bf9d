package audit

import "sort"

// ring holds the most recent records in ID order, overwriting the oldest.
// Not safe for concurrent use.
type ring struct {
	buf   []Record
	start int // index of the oldest record
	n     int
}

func newRing(size int) *ring { return &ring{buf: make([]Record, size)} }

func (r *ring) at(i int) *Record { return &r.buf[(r.start+i)%len(r.buf)] }

// push appends rec, whose ID must be above every ID in the ring.
func (r *ring) push(rec Record) {
	if r.n < len(r.buf) {
		*r.at(r.n) = rec
		r.n++
		return
	}
	r.buf[r.start] = rec
	r.start = (r.start + 1) % len(r.buf)
}

// update replaces the record with rec's ID, if the ring still holds it.
func (r *ring) update(rec Record) bool {
	i := sort.Search(r.n, func(i int) bool { return r.at(i).ID >= rec.ID })
	if i == r.n || r.at(i).ID != rec.ID {
		return false
	}
	*r.at(i) = rec
	return true
}

// each calls fn on the records from newest to oldest until fn returns false.
func (r *ring) eachNewest(fn func(*Record) bool) {
	for i := r.n - 1; i >= 0; i-- {
		if !fn(r.at(i)) {
			return
		}
	}
}
