package learned

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func learnSome(s *Store) {
	s.Learn(
		Learning{App: "weather", Name: "api.example.com", Ports: tcp443, Addrs: []AddrTTL{{a("198.18.0.1"), time.Minute}, {a("2001:db8::1"), 2 * time.Minute}}},
		Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{a("198.18.0.2"), 10 * time.Second}}},
		Learning{App: "weather", Name: "printer.example.com", Via: "_ipp._tcp.example.com", Grant: time.Minute, Addrs: []AddrTTL{{a("198.18.0.9"), time.Minute}}},
		Learning{App: "news", Name: "news.example.com", Ports: tcp80, Addrs: []AddrTTL{{a("198.18.0.1"), time.Hour}}},
		Learning{App: "removed", Name: "x.example.com", Addrs: []AddrTTL{{a("198.18.0.7"), time.Minute}}},
	)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A store that is killed (no Close) comes back from its journal; one that
// is closed comes back from its snapshot.
func TestRestore(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		name := "killed"
		if closeFirst {
			name = "closed"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			clk := newClock()
			p := testPolicy(t)
			s1 := New(Options{Limits: lim, Clock: clk, StateDir: dir})
			if n, err := s1.Restore(p); n != 0 || err != nil {
				t.Fatalf("Restore(empty) = %d, %v", n, err)
			}
			learnSome(s1)
			if err := s1.FlushJournal(); err != nil {
				t.Fatal(err)
			}
			if closeFirst {
				if err := s1.Close(); err != nil {
					t.Fatal(err)
				}
			}
			clk.Advance(15 * time.Second) // a.cdn.example (lifetime 20s) has 5s left
			want := s1.Elements(p, clk.Now())

			s2 := New(Options{Limits: lim, Clock: clk, StateDir: dir})
			n, err := s2.Restore(p)
			if err != nil {
				t.Fatal(err)
			}
			if n != 7 { // everything but the removed app's entry was written; none expired yet
				t.Errorf("Restore = %d, want 7", n)
			}
			got := s2.Elements(p, clk.Now())
			if diff := cmp.Diff(want, got, eqAddr); diff != "" {
				t.Errorf("Elements after restore (-before +after):\n%s", diff)
			}
			if via, ok := s2.Granted("weather", "printer.example.com"); !ok || via != "_ipp._tcp.example.com" {
				t.Errorf("Granted after restore = %q, %v", via, ok)
			}
			if got := s2.Snapshot("removed"); got != nil {
				t.Errorf("removed app restored: %v", got)
			}
			if diff := cmp.Diff([]string{"learned.journal.4", "learned.snapshot"}, listDir(t, dir)); !closeFirst && diff != "" {
				t.Errorf("state directory after restore (-want +got):\n%s", diff)
			}
			// Entries learned after the restore go to the new journal.
			s2.Learn(Learning{App: "news", Name: "news.example.com", Ports: tcp80, Addrs: []AddrTTL{{a("198.18.0.99"), time.Hour}}})
			if err := s2.FlushJournal(); err != nil {
				t.Fatal(err)
			}
			s3 := New(Options{Limits: lim, Clock: clk, StateDir: dir})
			if _, err := s3.Restore(p); err != nil {
				t.Fatal(err)
			}
			if got := s3.Names("news", a("198.18.0.99")); len(got) != 1 {
				t.Errorf("entry learned after restore is lost: Names = %v", got)
			}
			for _, s := range []*Store{s1, s2, s3} {
				s.Close()
			}
		})
	}
}

func TestRestoreDropsExpiredAndClampsClock(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	p := testPolicy(t)
	s1 := New(Options{Limits: lim, Clock: clk, StateDir: dir})
	s1.Restore(p)
	learnSome(s1)
	s1.Close()

	// Later: only news.example.com (1h10s) is left.
	clk.Advance(30 * time.Minute)
	s2 := New(Options{Limits: lim, Clock: clk, StateDir: dir})
	if n, err := s2.Restore(p); n != 1 || err != nil {
		t.Fatalf("Restore 30 minutes later = %d, %v; want 1, nil", n, err)
	}
	s2.Close()

	// The wall clock went back a day: lifetimes are clamped to the ceiling.
	clk.Advance(-24 * time.Hour)
	s3 := New(Options{Limits: lim, Clock: clk, StateDir: dir})
	if n, err := s3.Restore(p); n != 1 || err != nil {
		t.Fatalf("Restore after clock step = %d, %v", n, err)
	}
	els := s3.Elements(p, clk.Now())
	if len(els) != 2 || els[0].Timeout != lim.Lifetime(lim.TTLCeiling) || els[1].Timeout != lim.Lifetime(lim.TTLCeiling) {
		t.Errorf("Elements after clock step = %v, want tcp/80 and 443 with timeout %v", els, lim.Lifetime(lim.TTLCeiling))
	}
	s3.Close()
}

func TestRestoreDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	p := testPolicy(t)
	exp := clk.Now().Add(time.Minute).UnixMilli()
	hdr := `{"format":"pinhole-learned","version":1}` + "\n"
	rec := func(name, addr string) string {
		return `{"app":"weather","name":"` + name + `","addr":"` + addr + `","exp":` + itoa(exp) + "}\n"
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("learned.snapshot", hdr+rec("a.cdn.example", "198.18.0.1"))
	write("learned.journal.1", hdr+rec("b.cdn.example", "198.18.0.2")+`{"app":"weather","na`) // torn tail
	write("learned.journal.2", hdr+rec("c.cdn.example", "198.18.0.3")+"garbage\n"+rec("d.cdn.example", "198.18.0.4"))
	write("learned.journal.3", hdr+rec("e.cdn.example", "198.18.0.5"))

	s := New(Options{Limits: lim, Clock: clk, StateDir: dir})
	n, err := s.Restore(p)
	if err == nil || !strings.Contains(err.Error(), "learned.journal.2: line 3") {
		t.Errorf("Restore error = %v, want one naming learned.journal.2 line 3", err)
	}
	if n != 3 {
		t.Errorf("Restore = %d, want 3 (snapshot, journal 1, journal 3)", n)
	}
	var names []string
	for _, ne := range s.Snapshot("weather") {
		names = append(names, ne.Name)
	}
	if diff := cmp.Diff([]string{"a.cdn.example", "b.cdn.example", "e.cdn.example"}, names); diff != "" {
		t.Errorf("restored names (-want +got):\n%s", diff)
	}
	s.Close()
	if diff := cmp.Diff([]string{"learned.journal.6", "learned.snapshot"}, listDir(t, dir)); diff != "" {
		t.Errorf("state directory after Close (-want +got):\n%s", diff)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestParseRecords(t *testing.T) {
	hdr := `{"format":"pinhole-learned","version":1}` + "\n"
	tests := []struct {
		name    string
		in      string
		torn    bool
		want    []record
		wantErr string
	}{
		{name: "header only", in: hdr, want: nil},
		{name: "records", in: hdr + `{"app":"a","name":"x.example","addr":"198.18.0.1","exp":5}` + "\n" + `{"app":"a","name":"y.example","via":"_ipp._tcp.example","exp":6}` + "\n",
			want: []record{{App: "a", Name: "x.example", Addr: "198.18.0.1", Exp: 5}, {App: "a", Name: "y.example", Via: "_ipp._tcp.example", Exp: 6}}},
		{name: "empty", in: "", wantErr: "line 1: empty file"},
		{name: "wrong format", in: `{"format":"other","version":1}` + "\n", wantErr: `line 1: format "other"`},
		{name: "wrong version", in: `{"format":"pinhole-learned","version":2}` + "\n", wantErr: "version 2"},
		{name: "unknown field", in: hdr + `{"app":"a","name":"x","exp":5,"ports":[]}` + "\n", wantErr: `line 2: json: unknown field "ports"`},
		{name: "two values", in: hdr + `{"app":"a","name":"x","exp":5}{}` + "\n", wantErr: "line 2: more than one JSON value"},
		{name: "bad addr", in: hdr + `{"app":"a","name":"x","addr":"198.18.0.256","exp":5}` + "\n", wantErr: "line 2: addr:"},
		{name: "mapped addr", in: hdr + `{"app":"a","name":"x","addr":"::ffff:1.2.3.4","exp":5}` + "\n", wantErr: "not a plain unicast"},
		{name: "non-canonical addr", in: hdr + `{"app":"a","name":"x","addr":"2001:DB8::1","exp":5}` + "\n", wantErr: "canonical form"},
		{name: "zero exp", in: hdr + `{"app":"a","name":"x","exp":0}` + "\n", wantErr: "exp 0"},
		{name: "no app", in: hdr + `{"name":"x","exp":1}` + "\n", wantErr: "app: empty"},
		{name: "control byte", in: hdr + `{"app":"a","name":"x\u0001y","exp":1}` + "\n", wantErr: "not printable ASCII"},
		{name: "no final newline", in: hdr + `{"app":"a","name":"x","exp":1}`, wantErr: "line 2: no newline"},
		{name: "torn tail", in: hdr + `{"app":"a","name":"x","exp":1}` + "\n" + `{"app":"a"`, torn: true, want: []record{{App: "a", Name: "x", Exp: 1}}},
		{name: "long line", in: hdr + `{"app":"a","name":"` + strings.Repeat("x", 5000) + `","exp":1}` + "\n", wantErr: "line 2: longer than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRecords(strings.NewReader(tt.in), tt.torn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRecords error = %v, want it to contain %q", err, tt.wantErr)
				}
				t.Logf("err: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseRecords (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompactTriggers(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	p := testPolicy(t)
	s := New(Options{Limits: Limits{TTLCeiling: time.Hour, MaxPerApp: 1 << 20, MaxPerName: 1 << 20}, Clock: clk, StateDir: dir})
	s.Restore(p)
	// About 100 bytes a record: 50k records pass the 4 MiB threshold.
	base := a("2001:db8::")
	var ls []Learning
	for i := range 50000 {
		b := base.As16()
		b[13], b[14], b[15] = byte(i>>16), byte(i>>8), byte(i)
		ls = append(ls, Learning{App: "weather", Name: "a.cdn.example", Addrs: []AddrTTL{{netip.AddrFrom16(b), time.Minute}}})
		if len(ls) == 1000 {
			s.Learn(ls...)
			ls = ls[:0]
			if err := s.FlushJournal(); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.bg.Wait()
	files := listDir(t, dir)
	if !slices.Contains(files, "learned.snapshot") || slices.Contains(files, "learned.journal.1") {
		t.Errorf("state directory after a big journal = %v, want a new snapshot and journal 1 gone", files)
	}
	st, err := os.Stat(filepath.Join(dir, "learned.snapshot"))
	if err != nil || st.Size() < 1<<20 {
		t.Errorf("snapshot = %v, %v; want a big one", st, err)
	}
	s.Close()
	s2 := New(Options{Limits: Limits{TTLCeiling: time.Hour, MaxPerApp: 1 << 20, MaxPerName: 1 << 20}, Clock: clk, StateDir: dir})
	if n, err := s2.Restore(p); n < 50000 || err != nil {
		t.Errorf("Restore = %d, %v; want at least 50000", n, err)
	}
	s2.Close()
}

// Compactions racing with each other and with learning lose nothing: a
// store killed afterwards restores exactly what it held.
func TestCompactConcurrent(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	p := testPolicy(t)
	big := Limits{TTLCeiling: time.Hour, MaxPerApp: 1 << 20, MaxPerName: 1 << 20}
	s := New(Options{Limits: big, Clock: clk, StateDir: dir})
	if _, err := s.Restore(p); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				s.Learn(Learning{App: "weather", Name: fmt.Sprintf("n%d.cdn.example", i%20), Addrs: []AddrTTL{{netip.AddrFrom4([4]byte{198, 18, byte(g), byte(i)}), time.Minute}}})
				if err := s.FlushJournal(); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				if err := s.Compact(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	s.bg.Wait()
	want := s.Elements(p, clk.Now())
	s2 := New(Options{Limits: big, Clock: clk, StateDir: dir})
	if _, err := s2.Restore(p); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, s2.Elements(p, clk.Now()), eqAddr); diff != "" {
		t.Errorf("restored elements (-before +after):\n%s", diff)
	}
	if len(want) != 4*256 {
		t.Errorf("%d elements, want %d", len(want), 4*256)
	}
	s.Close()
	s2.Close()
}
