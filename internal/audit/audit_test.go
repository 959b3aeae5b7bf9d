package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// fakeClock is a settable clock for tests outside a synctest bubble.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeNames serves Namer and Learners from maps.
type fakeNames struct {
	names    map[string]map[netip.Addr][]string // app -> addr -> names
	learners map[netip.Addr][]string
}

func (f fakeNames) Names(app string, a netip.Addr) []string { return f.names[app][a] }
func (f fakeNames) LearnedBy(a netip.Addr) []string         { return f.learners[a] }

// onlyNames hides LearnedBy.
type onlyNames struct{ f fakeNames }

func (o onlyNames) Names(app string, a netip.Addr) []string { return o.f.Names(app, a) }

func u32(v uint32) *uint32 { return &v }

func udpOut(app string, dport uint16) Packet {
	return Packet{
		Prefix:   logprefix.Prefix{Verdict: logprefix.Deny, Direction: logprefix.Out, Identity: app}.String(),
		Payload:  ipv4(17, "10.0.0.2", "198.18.0.9", 0, udpHdr(40000, dport)),
		UID:      u32(1234),
		GID:      u32(2345),
		OutIface: "eth0",
	}
}

var ignoreTimes = cmpopts.IgnoreFields(Record{}, "First", "Last")

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestDeliverRecord(t *testing.T) {
	t.Parallel()
	names := fakeNames{
		names: map[string]map[netip.Addr][]string{
			"weather": {addr("198.18.0.9"): {"api.weather.example", "cdn.weather.example"}},
			"news":    {addr("2001:db8:1::9"): {"news.example"}},
		},
		learners: map[netip.Addr][]string{
			addr("198.18.0.9"):    {"weather", "maps"},
			addr("2001:db8:1::9"): {"news"},
		},
	}
	tests := []struct {
		name  string
		namer Namer
		pkt   Packet
		want  Record
	}{
		{
			name:  "udp out with names",
			namer: names,
			pkt:   udpOut("weather", 9),
			want: Record{
				ID: 1, Count: 1, App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out,
				Proto: ProtoUDP, Src: addr("10.0.0.2"), SrcPort: 40000, Dst: addr("198.18.0.9"), DstPort: 9,
				UID: u32(1234), GID: u32(2345), OutIface: "eth0",
				Hosts: []string{"api.weather.example", "cdn.weather.example"}, LearnedBy: []string{"maps"},
			},
		},
		{
			name:  "learned by another app only",
			namer: names,
			pkt:   udpOut("clock", 123),
			want: Record{
				ID: 1, Count: 1, App: "clock", Verdict: logprefix.Deny, Direction: logprefix.Out,
				Proto: ProtoUDP, Src: addr("10.0.0.2"), SrcPort: 40000, Dst: addr("198.18.0.9"), DstPort: 123,
				UID: u32(1234), GID: u32(2345), OutIface: "eth0",
				LearnedBy: []string{"weather", "maps"},
			},
		},
		{
			name:  "namer without LearnedBy",
			namer: onlyNames{names},
			pkt:   udpOut("weather", 9),
			want: Record{
				ID: 1, Count: 1, App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out,
				Proto: ProtoUDP, Src: addr("10.0.0.2"), SrcPort: 40000, Dst: addr("198.18.0.9"), DstPort: 9,
				UID: u32(1234), GID: u32(2345), OutIface: "eth0",
				Hosts: []string{"api.weather.example", "cdn.weather.example"},
			},
		},
		{
			name:  "inbound: the remote is the source",
			namer: names,
			pkt: Packet{
				Prefix:  "ph audit in news\x00",
				Payload: ipv6(6, "2001:db8:1::9", "2001:db8::2", tcpHdr(51000, 8080, SYN)),
				InIface: "wlan0",
			},
			want: Record{
				ID: 1, Count: 1, App: "news", Verdict: logprefix.Audit, Direction: logprefix.In,
				Proto: ProtoTCP, Src: addr("2001:db8:1::9"), SrcPort: 51000, Dst: addr("2001:db8::2"), DstPort: 8080,
				TCPFlags: SYN, InIface: "wlan0", Hosts: []string{"news.example"},
			},
		},
		{
			name:  "inbound, logged leaving: the answer is turned back into the client's attempt",
			namer: names,
			pkt: Packet{
				Prefix:   "ph deny in news",
				Payload:  ipv6(6, "2001:db8::2", "2001:db8:1::9", tcpHdr(8080, 51000, SYN|ACK)),
				OutIface: "wlan0",
				Leaving:  true,
			},
			want: Record{
				ID: 1, Count: 1, App: "news", Verdict: logprefix.Deny, Direction: logprefix.In,
				Proto: ProtoTCP, Src: addr("2001:db8:1::9"), SrcPort: 51000, Dst: addr("2001:db8::2"), DstPort: 8080,
				TCPFlags: SYN | ACK, OutIface: "wlan0", Hosts: []string{"news.example"},
			},
		},
		{
			name: "icmp without a namer",
			pkt: Packet{
				Prefix:  "ph deny out unmanaged",
				Payload: ipv4(1, "10.0.0.2", "198.18.0.9", 0, icmpHdr(8, 0)),
				UID:     u32(0),
			},
			want: Record{
				ID: 1, Count: 1, App: "unmanaged", Verdict: logprefix.Deny, Direction: logprefix.Out,
				Proto: ProtoICMP, Src: addr("10.0.0.2"), Dst: addr("198.18.0.9"), ICMP: &ICMP{Type: 8},
				UID: u32(0),
			},
		},
		{
			name: "fragment",
			pkt: Packet{
				Prefix:  "ph deny out system",
				Payload: ipv4(17, "10.0.0.2", "198.18.0.9", 0x2000, udpHdr(1, 2)),
			},
			want: Record{
				ID: 1, Count: 1, App: "system", Verdict: logprefix.Deny, Direction: logprefix.Out,
				Proto: ProtoUDP, Src: addr("10.0.0.2"), SrcPort: 1, Dst: addr("198.18.0.9"), DstPort: 2, Fragment: true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			l := New(Options{Names: tt.namer, Clock: clk})
			defer l.Close()
			l.Deliver(tt.pkt)
			tt.want.First, tt.want.Last = clk.Now(), clk.Now()
			if diff := cmp.Diff([]Record{tt.want}, l.Query(Filter{}), addrCmp); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeliverDrops(t *testing.T) {
	t.Parallel()
	l := New(Options{})
	defer l.Close()
	good := udpOut("weather", 9).Payload
	for _, p := range []Packet{
		{Prefix: "appfw-deny ", Payload: good},
		{Prefix: "ph allow out weather", Payload: good},
		{Prefix: "ph deny out Weather", Payload: good},
		{Prefix: "ph deny out " + strings.Repeat("a", 32), Payload: good},
		{Prefix: "", Payload: good},
		{Prefix: "ph deny out weather", Payload: []byte("garbage")},
		{Prefix: "ph deny out weather"},
	} {
		l.Deliver(p)
	}
	l.Lost(errors.New("netlink receive: no buffer space available"))
	if got := l.Query(Filter{}); len(got) != 0 {
		t.Errorf("records = %+v, want none", got)
	}
	want := Stats{Packets: map[StatKey]uint64{}, Records: map[StatKey]uint64{}, ForeignPrefix: 5, ParseErrors: 2, Lost: 1}
	if diff := cmp.Diff(want, l.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestValidIdentity(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"weather": true, "system": true, "unmanaged": true, "a": true, "0": true, "my_app-2": true,
		strings.Repeat("a", 31): true, strings.Repeat("a", 32): false,
		"": false, "_a": false, "-a": false, "A": false, "a.b": false, "a b": false, "é": false,
	} {
		if got := validIdentity(s); got != want {
			t.Errorf("validIdentity(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestAggregate(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	t0 := clk.Now()
	l := New(Options{Clock: clk, Window: time.Minute})
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := l.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for range 5 {
		l.Deliver(udpOut("weather", 9))
		clk.Add(10 * time.Second)
	}
	l.Deliver(udpOut("weather", 10)) // another port: another record
	l.Deliver(udpOut("news", 9))     // another app: another record
	other := udpOut("weather", 9)    // another source port: the same flow
	other.Payload = ipv4(17, "10.0.0.2", "198.18.0.9", 0, udpHdr(40001, 9))
	l.Deliver(other)

	base := Record{
		Count: 1, App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out,
		Proto: ProtoUDP, Src: addr("10.0.0.2"), SrcPort: 40000, Dst: addr("198.18.0.9"), DstPort: 9,
		UID: u32(1234), GID: u32(2345), OutIface: "eth0",
	}
	rec := func(id uint64, first, last time.Duration, count uint64, edit func(*Record)) Record {
		r := base
		r.ID, r.First, r.Last, r.Count = id, t0.Add(first), t0.Add(last), count
		if edit != nil {
			edit(&r)
		}
		return r
	}
	want := []Record{
		rec(1, 0, 50*time.Second, 6, nil),
		rec(2, 50*time.Second, 50*time.Second, 1, func(r *Record) { r.DstPort = 10 }),
		rec(3, 50*time.Second, 50*time.Second, 1, func(r *Record) { r.App = "news" }),
	}
	if diff := cmp.Diff(want, l.Query(Filter{}), addrCmp); diff != "" {
		t.Fatalf("records in the window (-want +got):\n%s", diff)
	}

	// The window closes at 60s: the next packet opens a new record, and the
	// old one's final state is published.
	clk.Add(10 * time.Second)
	l.Deliver(udpOut("weather", 9))
	want = append(want, rec(4, 60*time.Second, 60*time.Second, 1, nil))
	if diff := cmp.Diff(want, l.Query(Filter{}), addrCmp); diff != "" {
		t.Fatalf("records after the window (-want +got):\n%s", diff)
	}

	// Close publishes the aggregates still open, if they grew.
	l.Deliver(udpOut("news", 9))
	l.Close()
	var streamed []Record
	for r := range ch {
		streamed = append(streamed, r)
	}
	wantStream := []Record{
		rec(1, 0, 0, 1, nil),
		want[1], want[2],
		want[0], // final state of 1
		want[3],
		rec(3, 50*time.Second, 60*time.Second, 2, func(r *Record) { r.App = "news" }), // final at Close
	}
	if diff := cmp.Diff(wantStream, streamed, addrCmp); diff != "" {
		t.Errorf("streamed records (-want +got):\n%s", diff)
	}
	st := l.Stats()
	wantPackets := map[StatKey]uint64{
		{App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out}: 8,
		{App: "news", Verdict: logprefix.Deny, Direction: logprefix.Out}:    2,
	}
	wantRecords := map[StatKey]uint64{
		{App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out}: 3,
		{App: "news", Verdict: logprefix.Deny, Direction: logprefix.Out}:    1,
	}
	if diff := cmp.Diff(wantPackets, st.Packets); diff != "" {
		t.Errorf("Stats.Packets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantRecords, st.Records); diff != "" {
		t.Errorf("Stats.Records (-want +got):\n%s", diff)
	}
}

func TestAggregatorEvictsOldest(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := New(Options{Clock: clk, MaxAggregates: 3})
	defer l.Close()
	for port := range uint16(5) {
		l.Deliver(udpOut("weather", port+1))
		l.Deliver(udpOut("weather", port+1))
	}
	st := l.Stats()
	if st.Evictions != 2 || st.Aggregates != 3 {
		t.Errorf("Evictions, Aggregates = %d, %d, want 2, 3", st.Evictions, st.Aggregates)
	}
	// An evicted flow starts a new record; the ring keeps every record's count.
	l.Deliver(udpOut("weather", 1))
	var counts []uint64
	for _, r := range l.Query(Filter{}) {
		counts = append(counts, r.Count)
	}
	if want := []uint64{2, 2, 2, 2, 2, 1}; !slices.Equal(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
}

// A clock that steps back closes the window instead of stretching it.
func TestAggregateClockStepsBack(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := New(Options{Clock: clk})
	defer l.Close()
	l.Deliver(udpOut("weather", 9))
	clk.Add(-time.Hour)
	l.Deliver(udpOut("weather", 9))
	if got := len(l.Query(Filter{})); got != 2 {
		t.Errorf("%d records, want 2", got)
	}
}

// The sweeper publishes a grown aggregate's final state once its window ends,
// without another packet.
func TestSweepPublishesFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Options{Window: 20 * time.Second})
		defer l.Close()
		ch, err := l.Subscribe(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			l.Deliver(udpOut("weather", 9))
			time.Sleep(time.Second)
		}
		if r := <-ch; r.Count != 1 {
			t.Fatalf("first streamed record has Count %d, want 1", r.Count)
		}
		synctest.Wait()
		select {
		case r := <-ch:
			t.Fatalf("streamed %+v before the window ended", r)
		default:
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		select {
		case r := <-ch:
			if r.ID != 1 || r.Count != 3 || r.Last.Sub(r.First) != 2*time.Second {
				t.Errorf("final record = %+v, want ID 1, Count 3, 2s long", r)
			}
		default:
			t.Fatal("no final record after the window")
		}
		if n := l.Stats().Aggregates; n != 0 {
			t.Errorf("%d aggregates open after the window, want 0", n)
		}
	})
}

func TestRingBounds(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := New(Options{Clock: clk, RingSize: 4})
	defer l.Close()
	for port := range uint16(10) {
		l.Deliver(udpOut("weather", port+1))
		clk.Add(time.Second)
	}
	var ids []uint64
	for _, r := range l.Query(Filter{}) {
		ids = append(ids, r.ID)
	}
	if want := []uint64{7, 8, 9, 10}; !slices.Equal(ids, want) {
		t.Errorf("ring IDs = %v, want %v", ids, want)
	}
	// An update of a record that left the ring changes nothing in it.
	l.Deliver(udpOut("weather", 1))
	if got := len(l.Query(Filter{})); got != 4 {
		t.Errorf("%d records, want 4", got)
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	r := newRing(3)
	ids := func() []uint64 {
		var out []uint64
		r.eachNewest(func(rec *Record) bool { out = append(out, rec.ID); return true })
		return out
	}
	if got := ids(); len(got) != 0 {
		t.Fatalf("empty ring holds %v", got)
	}
	for i := uint64(1); i <= 5; i++ {
		r.push(Record{ID: i * 10})
	}
	if want := []uint64{50, 40, 30}; !slices.Equal(ids(), want) {
		t.Fatalf("ring = %v, want %v", ids(), want)
	}
	for id, want := range map[uint64]bool{10: false, 20: false, 30: true, 35: false, 40: true, 50: true, 60: false} {
		if got := r.update(Record{ID: id, Count: 7}); got != want {
			t.Errorf("update(%d) = %v, want %v", id, got, want)
		}
	}
	var counts []uint64
	r.eachNewest(func(rec *Record) bool { counts = append(counts, rec.Count); return true })
	if want := []uint64{7, 7, 7}; !slices.Equal(counts, want) {
		t.Errorf("counts = %v, want %v", counts, want)
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	t0 := clk.Now()
	l := New(Options{Clock: clk})
	defer l.Close()
	apps := []string{"weather", "news", "weather", "clock", "weather"}
	for i, app := range apps {
		l.Deliver(udpOut(app, uint16(i+1)))
		clk.Add(time.Minute)
	}
	l.Deliver(udpOut("weather", 1)) // window of record 1 closed: a new record 6
	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, []uint64{1, 2, 3, 4, 5, 6}},
		{"app", Filter{App: "weather"}, []uint64{1, 3, 5, 6}},
		{"unknown app", Filter{App: "nobody"}, nil},
		{"limit keeps the newest", Filter{Limit: 2}, []uint64{5, 6}},
		{"app and limit", Filter{App: "weather", Limit: 3}, []uint64{3, 5, 6}},
		{"since", Filter{Since: t0.Add(3 * time.Minute)}, []uint64{4, 5, 6}},
		{"since is inclusive", Filter{Since: t0.Add(4 * time.Minute)}, []uint64{5, 6}},
		{"since and app", Filter{App: "news", Since: t0.Add(time.Minute)}, []uint64{2}},
		{"since in the future", Filter{Since: t0.Add(time.Hour)}, nil},
	}
	for _, tt := range tests {
		var got []uint64
		for _, r := range l.Query(tt.f) {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Query(%+v) IDs = %v, want %v", tt.name, tt.f, got, tt.want)
		}
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	l := New(Options{SubscriberBuffer: 2, MaxSubscribers: 2})
	defer l.Close()
	slow, err := l.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	gone, err := l.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Subscribe(t.Context()); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("third Subscribe error = %v, want ErrTooManySubscribers", err)
	}
	cancel()
	waitClosed(t, gone)

	// The slow subscriber never reads: Deliver must not block, and the
	// records beyond its buffer are counted as dropped.
	for port := range uint16(5) {
		l.Deliver(udpOut("weather", port+1))
	}
	st := l.Stats()
	if st.SubscriberDrops != 3 || st.Subscribers != 1 {
		t.Errorf("SubscriberDrops, Subscribers = %d, %d, want 3, 1", st.SubscriberDrops, st.Subscribers)
	}
	var ports []uint16
	for range 2 {
		ports = append(ports, (<-slow).DstPort)
	}
	if want := []uint16{1, 2}; !slices.Equal(ports, want) {
		t.Errorf("slow subscriber got ports %v, want %v", ports, want)
	}
	// A freed place can be taken again; Close ends every subscription.
	again, err := l.Subscribe(t.Context())
	if err != nil {
		t.Fatalf("Subscribe after a cancel: %v", err)
	}
	l.Close()
	waitClosed(t, again)
	waitClosed(t, slow)
	if _, err := l.Subscribe(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close error = %v, want ErrClosed", err)
	}
}

// waitClosed drains ch until it is closed, failing after a deadline.
func waitClosed(t *testing.T, ch <-chan Record) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("subscription channel not closed")
		}
	}
}

// readLines decodes the JSON lines of a file.
func readLines(t *testing.T, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r Record
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestDiskLog(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	clk := newFakeClock()
	names := fakeNames{names: map[string]map[netip.Addr][]string{"weather": {addr("198.18.0.9"): {"api.weather.example"}}}}
	l := New(Options{Dir: dir, Clock: clk, Names: names})
	l.Deliver(udpOut("weather", 9))
	l.Deliver(udpOut("weather", 9))
	l.Deliver(Packet{Prefix: "ph deny in unmanaged", Payload: ipv6(58, "2001:db8:1::9", "2001:db8::2", icmpHdr(128, 0))})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLines(t, filepath.Join(dir, FileName))
	want := []Record{
		{ID: 1, Count: 1, App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out,
			Proto: ProtoUDP, Src: addr("10.0.0.2"), SrcPort: 40000, Dst: addr("198.18.0.9"), DstPort: 9,
			UID: u32(1234), GID: u32(2345), OutIface: "eth0", Hosts: []string{"api.weather.example"}},
		{ID: 2, Count: 1, App: "unmanaged", Verdict: logprefix.Deny, Direction: logprefix.In,
			Proto: ProtoICMPv6, Src: addr("2001:db8:1::9"), Dst: addr("2001:db8::2"), ICMP: &ICMP{Type: 128}},
	}
	want = append(want, want[0])
	want[2].Count = 2
	if diff := cmp.Diff(want, got, addrCmp, ignoreTimes); diff != "" {
		t.Errorf("%s (-want +got):\n%s", FileName, diff)
	}
	if st := l.Stats(); st.DiskWritten != 3 || st.DiskErrors != 0 || st.DiskDropped != 0 {
		t.Errorf("disk stats %+v, want 3 written", st)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("%s mode = %v, %v, want 0640", FileName, fi.Mode(), err)
	}

	// The next run shows the last run's records and continues their IDs.
	l2 := New(Options{Dir: dir, Clock: clk})
	defer l2.Close()
	prev := l2.Query(Filter{})
	if diff := cmp.Diff([]Record{want[2], want[1]}, prev, addrCmp, ignoreTimes); diff != "" {
		t.Errorf("records loaded from %s (-want +got):\n%s", FileName, diff)
	}
	l2.Deliver(udpOut("weather", 7))
	if got := l2.Query(Filter{Limit: 1}); len(got) != 1 || got[0].ID != 3 {
		t.Errorf("first record of the next run = %+v, want ID 3", got)
	}
}

func TestDiskRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clk := newFakeClock()
	// A record line is about 250 bytes: two fit in a file of 600.
	l := New(Options{Dir: dir, Clock: clk, MaxFileSize: 600, KeepFiles: 2})
	for port := range uint16(9) {
		l.Deliver(udpOut("weather", port+1))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ports := func(name string) []uint16 {
		var out []uint16
		for _, r := range readLines(t, filepath.Join(dir, name)) {
			out = append(out, r.DstPort)
		}
		return out
	}
	for name, want := range map[string][]uint16{
		FileName:        {9},
		FileName + ".1": {7, 8},
		FileName + ".2": {5, 6},
	} {
		if got := ports(name); !slices.Equal(got, want) {
			t.Errorf("%s holds ports %v, want %v", name, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files %v, want 3", names)
	}
	if st := l.Stats(); st.Rotations != 4 || st.DiskWritten != 9 {
		t.Errorf("Rotations, DiskWritten = %d, %d, want 4, 9", st.Rotations, st.DiskWritten)
	}
	// A fresh run after rotation into an empty current file still continues
	// the IDs, from the newest rotated file.
	os.Remove(filepath.Join(dir, FileName))
	l2 := New(Options{Dir: dir, Clock: clk})
	defer l2.Close()
	l2.Deliver(udpOut("weather", 1))
	if got := l2.Query(Filter{Limit: 1}); len(got) != 1 || got[0].ID != 9 {
		t.Errorf("first record after a rotation = %+v, want ID 9", got)
	}
}

// syncBuffer is a log destination safe for the writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A failing disk is counted and logged a few times, and never stops the
// records from reaching the ring and subscribers.
func TestDiskWriteErrors(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("needs /dev/full")
	}
	dir := t.TempDir()
	if err := os.Symlink("/dev/full", filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	clk := newFakeClock()
	l := New(Options{Dir: dir, Clock: clk, DiskQueue: 100, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for port := range uint16(20) {
		l.Deliver(udpOut("weather", port+1))
		if port == 10 {
			clk.Add(retryDelay) // lets the writer try the file again
		}
	}
	l.Close()
	if got := len(l.Query(Filter{})); got != 20 {
		t.Errorf("%d records in the ring, want 20", got)
	}
	st := l.Stats()
	if st.DiskErrors == 0 || st.DiskWritten+st.DiskDropped != 20 {
		t.Errorf("disk stats: %d errors, %d written, %d dropped; want errors and 20 in all", st.DiskErrors, st.DiskWritten, st.DiskDropped)
	}
	if n := strings.Count(logs.String(), "audit log file"); n == 0 || n > 3 {
		t.Errorf("%d error log lines, want 1-3:\n%s", n, logs.String())
	}
}

// A directory that cannot be created is not fatal.
func TestDiskUnusableDir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := New(Options{Dir: filepath.Join(file, "state")})
	l.Deliver(udpOut("weather", 9))
	l.Close()
	st := l.Stats()
	// One error reading the previous file, one opening the new one.
	if st.DiskErrors != 2 || st.DiskDropped != 1 || len(l.Query(Filter{})) != 1 {
		t.Errorf("stats %+v, want two disk errors, one drop, and the record kept", st)
	}
}

func TestParseTail(t *testing.T) {
	t.Parallel()
	line := func(id uint64, count uint64) string {
		return fmt.Sprintf(`{"id":%d,"count":%d,"app":"weather","verdict":"deny","direction":"out","proto":"udp","src":"10.0.0.2","dst":"198.18.0.9"}`, id, count)
	}
	tests := []struct {
		name    string
		in      string
		partial bool
		want    []uint64 // ID*100+count
	}{
		{"whole", line(1, 1) + "\n" + line(2, 1) + "\n" + line(1, 5) + "\n", false, []uint64{105, 201}},
		{"cut first line skipped", line(1, 1)[5:] + "\n" + line(2, 1) + "\n", true, []uint64{201}},
		{"first line kept when whole file", line(1, 1) + "\n", false, []uint64{101}},
		{"cut last line", line(1, 1) + "\n" + line(2, 1)[:20], false, []uint64{101}},
		{"garbage lines", "x\n\n{}\n" + line(3, 2) + "\n[1]\n", false, []uint64{302}},
		{"no newline when partial", line(1, 1), true, nil},
	}
	for _, tt := range tests {
		var got []uint64
		for _, r := range parseTail([]byte(tt.in), tt.partial) {
			got = append(got, r.ID*100+r.Count)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: parseTail = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Close is safe to call twice, and Deliver after Close does nothing.
func TestCloseTwice(t *testing.T) {
	t.Parallel()
	l := New(Options{Dir: t.TempDir()})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Deliver(udpOut("weather", 9))
	if got := l.Query(Filter{}); len(got) != 0 {
		t.Errorf("records after Close: %+v", got)
	}
}

func TestStatKeysBounded(t *testing.T) {
	t.Parallel()
	l := New(Options{MaxAggregates: 10, RingSize: 10})
	defer l.Close()
	for i := range maxStatKeys + 50 {
		l.Deliver(udpOut(fmt.Sprintf("app%d", i), 9))
	}
	st := l.Stats()
	if len(st.Packets) != maxStatKeys+1 {
		t.Errorf("%d packet counters, want %d", len(st.Packets), maxStatKeys+1)
	}
	if n := st.Packets[StatKey{App: OtherApp, Verdict: logprefix.Deny, Direction: logprefix.Out}]; n != 50 {
		t.Errorf("%s counts %d, want 50", OtherApp, n)
	}
}
