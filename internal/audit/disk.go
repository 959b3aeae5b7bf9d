package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// FileName is the audit log's name in the state directory; rotated files
// get the suffixes .1 (newest) to .KeepFiles.
const FileName = "audit.jsonl"

// retryDelay is how long the writer waits before it reopens a file that failed.
const retryDelay = 10 * time.Second

// tailBytes bounds how much of the previous file New reads back.
const tailBytes = 512 << 10

// diskLog appends records as JSON lines from its own goroutine, so that a
// slow or failing disk never holds up the packet path.
type diskLog struct {
	path    string
	maxSize int64
	keep    int
	clock   Clock
	log     *slog.Logger
	errLog  rate.Sometimes
	ch      chan Record

	// Owned by run.
	f       *os.File
	w       *bufio.Writer
	size    int64
	retryAt time.Time

	mu        sync.Mutex // guards the counters and closing
	closing   bool
	written   uint64
	dropped   uint64
	errs      uint64
	rotations uint64
	closeErr  error
}

func newDiskLog(opts Options, log *slog.Logger) *diskLog {
	return &diskLog{
		path:    filepath.Join(opts.Dir, FileName),
		maxSize: opts.MaxFileSize,
		keep:    opts.KeepFiles,
		clock:   opts.Clock,
		log:     log,
		errLog:  rate.Sometimes{First: 3, Interval: time.Minute},
		ch:      make(chan Record, opts.DiskQueue),
	}
}

// enqueue hands r to the writer, or counts it dropped when the queue is full.
func (d *diskLog) enqueue(r Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		d.dropped++
		return
	}
	select {
	case d.ch <- r:
	default:
		d.dropped++
	}
}

// close stops accepting records; run writes what is queued and closes the file.
func (d *diskLog) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closing {
		d.closing = true
		close(d.ch)
	}
}

func (d *diskLog) stats(s *Stats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.DiskWritten, s.DiskDropped, s.DiskErrors, s.Rotations = d.written, d.dropped, d.errs, d.rotations
}

func (d *diskLog) add(c *uint64) {
	d.mu.Lock()
	*c++
	d.mu.Unlock()
}

func (d *diskLog) run() {
	for r := range d.ch {
		d.write(r)
		if len(d.ch) == 0 && d.w != nil {
			if err := d.w.Flush(); err != nil {
				d.fail("write", err)
			}
		}
	}
	var err error
	if d.f != nil {
		err = errors.Join(d.w.Flush(), d.f.Close())
		if err != nil {
			d.add(&d.errs)
			err = fmt.Errorf("close audit log %s: %w", d.path, err)
		}
		d.f, d.w = nil, nil
	}
	d.mu.Lock()
	d.closeErr = err
	d.mu.Unlock()
}

func (d *diskLog) write(r Record) {
	line, err := json.Marshal(r)
	if err != nil { // cannot happen for a Record; count it rather than panic
		d.fail("encode", err)
		d.add(&d.dropped)
		return
	}
	line = append(line, '\n')
	if d.f == nil {
		if d.clock.Now().Before(d.retryAt) {
			d.add(&d.dropped)
			return
		}
		if err := d.open(); err != nil {
			d.fail("open", err)
			d.add(&d.dropped)
			return
		}
	}
	if d.size > 0 && d.size+int64(len(line)) > d.maxSize {
		if err := d.rotate(); err != nil {
			d.fail("rotate", err)
			d.add(&d.dropped)
			return
		}
	}
	n, err := d.w.Write(line)
	d.size += int64(n)
	if err != nil {
		d.fail("write", err)
		d.add(&d.dropped)
		return
	}
	d.add(&d.written)
}

func (d *diskLog) open() error {
	if err := os.MkdirAll(filepath.Dir(d.path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	d.f, d.w, d.size = f, bufio.NewWriter(f), st.Size()
	return nil
}

// rotate shifts audit.jsonl.N-1 to .N, ..., the current file to .1, and opens
// a new current file. The oldest file is overwritten.
func (d *diskLog) rotate() error {
	err := errors.Join(d.w.Flush(), d.f.Close())
	d.f, d.w = nil, nil
	if err != nil {
		return err
	}
	for i := d.keep - 1; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", d.path, i), fmt.Sprintf("%s.%d", d.path, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(d.path, d.path+".1"); err != nil {
		return err
	}
	d.add(&d.rotations)
	return d.open()
}

// fail counts a failed file operation, logs it now and then, and drops the
// file so that the next record after retryDelay reopens it.
func (d *diskLog) fail(op string, err error) {
	d.add(&d.errs)
	d.errLog.Do(func() {
		d.log.Error("audit log file", "op", op, "path", d.path, "err", err)
	})
	if d.f != nil {
		d.f.Close()
		d.f, d.w = nil, nil
	}
	d.retryAt = d.clock.Now().Add(retryDelay)
}

// loadPrevious reads the newest records (at most n) of an earlier run back:
// from the tail of the current file, or of the newest rotated one if the
// current file has none.
func (d *diskLog) loadPrevious(n int) []Record {
	for _, p := range []string{d.path, d.path + ".1"} {
		b, partial, err := readTail(p, tailBytes)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			d.add(&d.errs)
			d.log.Warn("read previous audit log", "path", p, "err", err)
			return nil
		}
		if recs := parseTail(b, partial); len(recs) > 0 {
			return recs[max(0, len(recs)-n):]
		}
	}
	return nil
}

// readTail returns the last max bytes of the file at path; partial says
// whether the file is longer.
func readTail(path string, max int64) ([]byte, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	off := st.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return b, off > 0, err
}

// parseTail reads JSON lines of records, skipping lines it cannot read (the
// first one when partial, as it may be cut, and a last one cut by a crash).
// It returns the last state of each record, by ID.
func parseTail(b []byte, partial bool) []Record {
	if partial {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil
		}
		b = b[i+1:]
	}
	byID := make(map[uint64]Record)
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		var r Record
		if len(line) == 0 || json.Unmarshal(line, &r) != nil || r.ID == 0 {
			continue
		}
		byID[r.ID] = r
	}
	out := make([]Record, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}
