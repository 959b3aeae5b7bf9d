package learned

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// The state directory holds one snapshot, written atomically, and journal
// files that record every change since. A change is appended to the
// journal (page cache, no fsync) before its element goes to the kernel, so a
// killed daemon loses nothing; a power cut loses what the kernel loses too.
const (
	snapshotFile  = "learned.snapshot"
	journalPrefix = "learned.journal."
	formatName    = "pinhole-learned"
	formatVersion = 1
	// compactAt is the journal size that triggers a new snapshot.
	compactAt = 4 << 20
	// maxLine bounds one record line when reading.
	maxLine = 4096
)

type header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// record is one line of a snapshot or journal: an address learned for a
// name, or (Addr empty) a grant that lets the app resolve the name.
type record struct {
	App  string `json:"app"`
	Name string `json:"name"`
	Via  string `json:"via,omitempty"`
	Addr string `json:"addr,omitempty"`
	// Exp is the expiry in Unix milliseconds.
	Exp int64 `json:"exp"`
}

type journal struct {
	gen  uint64
	f    *os.File
	buf  []byte
	size int64
}

func (s *Store) journalLocked(app string, n *nameRec, e *entry) {
	j := s.journal
	if j == nil {
		return
	}
	j.buf = appendRecord(j.buf, recordOf(app, n, e))
	if len(j.buf) > 1<<20 {
		s.flushLocked()
	}
}

func recordOf(app string, n *nameRec, e *entry) record {
	r := record{App: app, Name: n.name, Via: n.via, Exp: e.expires.UnixMilli()}
	if e.addr.IsValid() {
		r.Addr = e.addr.String()
	}
	return r
}

func appendRecord(b []byte, r record) []byte {
	line, err := json.Marshal(r)
	if err != nil { // cannot happen: strings and an int
		panic(err)
	}
	b = append(b, line...)
	return append(b, '\n')
}

// FlushJournal writes the changes learned since the last call to the
// journal. The DNS proxy calls it before each kernel insert.
func (s *Store) FlushJournal() error {
	s.mu.Lock()
	err := s.flushLocked()
	compact := s.journal != nil && s.journal.size > compactAt && !s.compacting
	if compact {
		s.compacting = true
	}
	s.mu.Unlock()
	if compact {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := s.Compact(); err != nil {
				s.log.Error("compact learned state", "err", err)
			}
		}()
	}
	return err
}

func (s *Store) flushLocked() error {
	j := s.journal
	if j == nil || len(j.buf) == 0 {
		return nil
	}
	n, err := j.f.Write(j.buf)
	j.size += int64(n)
	j.buf = j.buf[:0]
	if err != nil {
		return fmt.Errorf("write learned journal: %w", err)
	}
	return nil
}

// Compact writes a snapshot of everything learned and removes the journals
// it covers.
func (s *Store) Compact() error {
	// One at a time: a slower, older snapshot must not replace a newer one
	// after the journals between them are gone.
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	s.mu.Lock()
	if s.dir == "" || s.journal == nil {
		s.compacting = false
		s.mu.Unlock()
		return nil
	}
	if err := s.flushLocked(); err != nil {
		s.log.Warn("flush learned journal", "err", err)
	}
	recs := s.recordsLocked()
	old := s.journal
	next, err := openJournal(s.dir, old.gen+1)
	if err != nil {
		s.compacting = false
		s.mu.Unlock()
		return err
	}
	s.journal = next
	s.mu.Unlock()

	old.f.Close()
	err = writeSnapshot(s.dir, recs)
	if err == nil {
		err = removeJournals(s.dir, next.gen)
	}
	s.mu.Lock()
	s.compacting = false
	s.mu.Unlock()
	return err
}

func (s *Store) recordsLocked() []record {
	var recs []record
	for _, a := range s.apps {
		for _, e := range a.byExp {
			recs = append(recs, recordOf(a.name, e.name, e))
		}
	}
	slices.SortFunc(recs, func(x, y record) int {
		if c := strings.Compare(x.App, y.App); c != 0 {
			return c
		}
		if c := strings.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return strings.Compare(x.Addr, y.Addr)
	})
	return recs
}

// Close writes a final snapshot and stops journaling.
func (s *Store) Close() error {
	s.bg.Wait()
	err := s.Compact()
	s.mu.Lock()
	if s.journal != nil {
		s.journal.f.Close()
		s.journal = nil
	}
	s.mu.Unlock()
	return err
}

// Restore loads the saved state from the state directory, keeps what p
// allows and has not expired, writes a fresh snapshot and starts
// journaling. Call it before the first answer is served. A damaged file is
// skipped and reported in the error; what could be read is still restored.
func (s *Store) Restore(p *policy.Policy) (int, error) {
	if s.dir == "" {
		return 0, nil
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return 0, fmt.Errorf("create state directory: %w", err)
	}
	now := s.clock.Now()
	var errs []error
	var recs []record
	snap := filepath.Join(s.dir, snapshotFile)
	if rs, err := readFile(snap, false); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	} else {
		recs = append(recs, rs...)
	}
	gens, err := journalGens(s.dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, g := range gens {
		rs, err := readFile(filepath.Join(s.dir, journalPrefix+strconv.FormatUint(g, 10)), true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, rs...)
	}
	n := s.load(recs, now)
	s.Retain(p)

	var last uint64
	if len(gens) > 0 {
		last = gens[len(gens)-1]
	}
	j, err := openJournal(s.dir, last+1)
	if err != nil {
		return n, errors.Join(append(errs, err)...)
	}
	s.mu.Lock()
	s.journal = j
	s.mu.Unlock()
	if err := s.Compact(); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// load merges records into the store, keeping the later expiry when a
// record repeats, and returns how many unexpired ones it took.
func (s *Store) load(recs []record, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	max := s.lim.maxLifetime()
	n := 0
	for _, r := range recs {
		exp := time.UnixMilli(r.Exp)
		if exp.Sub(now) < minRemaining {
			continue
		}
		if max > 0 && exp.Sub(now) > max {
			exp = now.Add(max) // the wall clock went back since it was saved
		}
		a := s.app(r.App)
		nr := a.names[r.Name]
		if nr == nil {
			nr = &nameRec{name: r.Name, via: r.Via, ports: policy.Ports{}}
		}
		nr.via = r.Via
		if r.Addr == "" {
			if nr.grant == nil {
				s.makeRoomLocked(a)
				nr.grant = &entry{name: nr, expires: exp}
				heap.Push(&a.byExp, nr.grant)
			} else if exp.After(nr.grant.expires) {
				nr.grant.expires = exp
				heap.Fix(&a.byExp, nr.grant.index)
			}
			a.names[r.Name] = nr
			n++
			continue
		}
		addr := netip.MustParseAddr(r.Addr) // validated by readFile
		if e := a.find(nr, addr); e != nil {
			if exp.After(e.expires) {
				e.expires = exp
				heap.Fix(&a.byExp, e.index)
			}
			n++
			continue
		}
		if len(nr.addrs) >= s.lim.MaxPerName {
			s.removeLocked(a, nr.oldest())
			s.stats.evictPerName[r.App]++
		}
		s.makeRoomLocked(a)
		a.names[r.Name] = nr
		e := &entry{name: nr, addr: addr, expires: exp}
		nr.addrs = append(nr.addrs, e)
		heap.Push(&a.byExp, e)
		ar := a.addrs[addr]
		if ar == nil {
			ar = &addrRec{}
			a.addrs[addr] = ar
		}
		ar.entries = append(ar.entries, e)
		n++
	}
	return n
}

// readFile reads a snapshot or journal. A journal's last line may be torn
// by a crash and is then ignored; any other bad line rejects the file.
func readFile(path string, isJournal bool) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := parseRecords(f, isJournal)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}

// parseRecords reads the state file format strictly: a header line, then
// one JSON record per line. With tornTail, a last line without its newline
// is dropped instead of rejected.
func parseRecords(r io.Reader, tornTail bool) ([]record, error) {
	br := bufio.NewReaderSize(r, maxLine)
	var recs []record
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", lineNo, maxLine)
		}
		if err == io.EOF {
			if len(line) == 0 || tornTail {
				if lineNo == 1 && len(line) == 0 {
					return nil, errors.New("line 1: empty file, want a header")
				}
				return recs, nil
			}
			return nil, fmt.Errorf("line %d: no newline at the end", lineNo)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		line = line[:len(line)-1]
		if lineNo == 1 {
			var h header
			if err := decodeStrict(line, &h); err != nil {
				return nil, fmt.Errorf("line 1: header: %w", err)
			}
			if h.Format != formatName || h.Version != formatVersion {
				return nil, fmt.Errorf("line 1: format %q version %d, want %q version %d", h.Format, h.Version, formatName, formatVersion)
			}
			continue
		}
		var rec record
		if err := decodeStrict(line, &rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if err := rec.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		recs = append(recs, rec)
	}
}

func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

func (r record) validate() error {
	if err := validName("app", r.App, 64); err != nil {
		return err
	}
	if err := validName("name", r.Name, 1024); err != nil {
		return err
	}
	if r.Via != "" {
		if err := validName("via", r.Via, 1024); err != nil {
			return err
		}
	}
	if r.Addr != "" {
		a, err := netip.ParseAddr(r.Addr)
		if err != nil {
			return fmt.Errorf("addr: %w", err)
		}
		if a.Zone() != "" || a.Is4In6() || a.IsUnspecified() {
			return fmt.Errorf("addr %q: not a plain unicast address", r.Addr)
		}
		if a.String() != r.Addr {
			return fmt.Errorf("addr %q: not in canonical form %q", r.Addr, a.String())
		}
	}
	if r.Exp <= 0 {
		return fmt.Errorf("exp %d: not a positive Unix time in milliseconds", r.Exp)
	}
	return nil
}

func validName(field, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s: empty", field)
	}
	if len(s) > max {
		return fmt.Errorf("%s: %d bytes long, more than %d", field, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == ' ' && field == "app" {
			return fmt.Errorf("%s %q: byte %#x at %d is not printable ASCII", field, s, c, i)
		}
	}
	return nil
}

func openJournal(dir string, gen uint64) (*journal, error) {
	path := filepath.Join(dir, journalPrefix+strconv.FormatUint(gen, 10))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open learned journal: %w", err)
	}
	j := &journal{gen: gen, f: f}
	hdr := appendHeader(nil)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		return nil, fmt.Errorf("write learned journal: %w", err)
	}
	j.size = int64(len(hdr))
	return j, nil
}

func appendHeader(b []byte) []byte {
	line, _ := json.Marshal(header{Format: formatName, Version: formatVersion})
	b = append(b, line...)
	return append(b, '\n')
}

// writeSnapshot replaces the snapshot atomically: temp file, fsync,
// rename, fsync of the directory.
func writeSnapshot(dir string, recs []record) error {
	tmp, err := os.CreateTemp(dir, snapshotFile+".tmp*")
	if err != nil {
		return fmt.Errorf("write learned snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	w := bufio.NewWriterSize(tmp, 64<<10)
	buf := appendHeader(nil)
	for _, r := range recs {
		buf = appendRecord(buf, r)
		if len(buf) >= 32<<10 {
			if _, err := w.Write(buf); err != nil {
				break
			}
			buf = buf[:0]
		}
	}
	w.Write(buf)
	err = w.Flush()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, snapshotFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write learned snapshot: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// journalGens lists the journal generations in the directory, ascending.
func journalGens(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read state directory: %w", err)
	}
	var gens []uint64
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), journalPrefix)
		if !ok {
			continue
		}
		g, err := strconv.ParseUint(rest, 10, 64)
		if err != nil || g == 0 {
			continue
		}
		gens = append(gens, g)
	}
	slices.Sort(gens)
	return gens, nil
}

// removeJournals removes every journal older than keep.
func removeJournals(dir string, keep uint64) error {
	gens, err := journalGens(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gens {
		if g < keep {
			if err := os.Remove(filepath.Join(dir, journalPrefix+strconv.FormatUint(g, 10))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
