package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/logprefix"
	"github.com/pinhole-net/pinhole/internal/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// nftTable installs a table from the nft CLI in the network namespace at
// netnsPath ("" for the test's device namespace) and deletes it at cleanup.
func nftTable(t *testing.T, netnsPath, name, body string) {
	t.Helper()
	run := func(stdin string, args ...string) ([]byte, error) {
		if netnsPath != "" {
			args = append([]string{"--net=" + netnsPath, "--", "nft"}, args...)
		} else {
			args = append([]string{"nft"}, args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		if netnsPath != "" {
			cmd = exec.Command("nsenter", args...)
		}
		cmd.Stdin = strings.NewReader(stdin)
		return cmd.CombinedOutput()
	}
	if out, err := run(fmt.Sprintf("table inet %s {\n%s\n}\n", name, body), "-f", "-"); err != nil {
		t.Fatalf("nft: %v\n%s\n%s", err, out, body)
	}
	t.Cleanup(func() {
		if out, err := run("", "delete", "table", "inet", name); err != nil {
			t.Errorf("nft delete table %s: %v\n%s", name, err, out)
		}
	})
}

func randName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// runSource runs src into l until the test ends and checks it stops cleanly.
func runSource(t *testing.T, src Source, l *Log) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Source.Run after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Source.Run did not return after cancel")
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// send runs a bash network redirection as cmd; the firewall drops or
// rejects it, so its error is expected and ignored.
func send(cmd *exec.Cmd) {
	cmd.Run()
}

// TestNFLOG: a denied packet of an app, logged by the kernel with pinhole's
// prefix, becomes a record naming the app, its uid, the destination and the
// host name the app learned for it.
func TestNFLOG(t *testing.T) {
	// Registered first, so it runs after the other cleanups stopped everything.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	bed := netnstest.New(t)
	app := netnstest.NewApp(t, "weather")
	const group = 100
	v4, v6 := bed.PublicV4, bed.PublicV6
	nftTable(t, "", randName("audit_"), fmt.Sprintf(`
	chain o {
		type filter hook output priority 0; policy accept;
		meta skuid %[1]d udp dport 9 log group %[2]d prefix "ph deny out weather" drop
		meta skuid %[1]d tcp dport 9 log group %[2]d prefix "ph audit out weather" reject with tcp reset
		meta skuid %[1]d udp dport 10 log group %[2]d prefix "someone else" drop
	}`, app.UID, group))

	names := fakeNames{
		names:    map[string]map[netip.Addr][]string{"weather": {v4: {"api.weather.example"}}},
		learners: map[netip.Addr][]string{v6: {"maps"}},
	}
	dir := t.TempDir()
	l := New(Options{Names: names, Dir: dir})
	runSource(t, &NFLOG{Group: group}, l)
	t.Cleanup(func() { l.Close() })

	// The reader binds asynchronously: send until the first record shows.
	waitFor(t, "the first record", func() bool {
		send(app.CommandAs(t.Context(), netnstest.Ident{UID: true}, "bash", "-c",
			fmt.Sprintf("echo hi >/dev/udp/%s/9", v4)))
		return len(l.Query(Filter{})) > 0
	})
	for range 2 {
		send(app.CommandAs(t.Context(), netnstest.Ident{UID: true}, "bash", "-c",
			fmt.Sprintf("echo hi >/dev/udp/%s/9", v4)))
	}
	send(app.CommandAs(t.Context(), netnstest.Ident{UID: true}, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/9", v6)))
	send(app.CommandAs(t.Context(), netnstest.Ident{UID: true}, "bash", "-c",
		fmt.Sprintf("echo hi >/dev/udp/%s/10", v4)))

	var udp, tcp Record
	waitFor(t, "the tcp record and the foreign prefix", func() bool {
		return len(l.Query(Filter{})) == 2 && l.Stats().ForeignPrefix > 0
	})
	for _, r := range l.Query(Filter{App: "weather"}) {
		switch r.Proto {
		case ProtoUDP:
			udp = r
		case ProtoTCP:
			tcp = r
		}
	}
	uid, gid := app.UID, app.GID
	want := Record{
		ID: udp.ID, First: udp.First, Last: udp.Last, Count: udp.Count,
		App: "weather", Verdict: logprefix.Deny, Direction: logprefix.Out, Proto: ProtoUDP,
		Src: bed.DeviceV4, SrcPort: udp.SrcPort, Dst: v4, DstPort: 9,
		UID: &uid, GID: &gid, OutIface: bed.DevLink, Hosts: []string{"api.weather.example"},
	}
	if diff := cmp.Diff(want, udp, addrCmp); diff != "" {
		t.Errorf("udp record (-want +got):\n%s", diff)
	}
	if udp.Count < 3 {
		t.Errorf("udp record Count = %d, want at least 3 (the sends after the first record)", udp.Count)
	}
	want = Record{
		ID: tcp.ID, First: tcp.First, Last: tcp.Last, Count: tcp.Count,
		App: "weather", Verdict: logprefix.Audit, Direction: logprefix.Out, Proto: ProtoTCP,
		Src: tcp.Src, SrcPort: tcp.SrcPort, Dst: v6, DstPort: 9, TCPFlags: SYN,
		UID: &uid, GID: &gid, OutIface: bed.DevLink, LearnedBy: []string{"maps"},
	}
	if diff := cmp.Diff(want, tcp, addrCmp); diff != "" {
		t.Errorf("tcp record (-want +got):\n%s", diff)
	}
	if !tcp.Src.Is6() || tcp.SrcPort == 0 || tcp.Count != 1 {
		t.Errorf("tcp record source %v port %d count %d, want an IPv6 address, a port, 1", tcp.Src, tcp.SrcPort, tcp.Count)
	}

	// The records reach the file when the log closes.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, dir+"/"+FileName)
	if len(lines) < 2 || lines[0].App != "weather" {
		t.Errorf("%s holds %+v, want the weather records", FileName, lines)
	}
}

// TestNFLOGNetNS reads the group of another network namespace, given by an
// open namespace file, and names its interfaces there.
func TestNFLOGNetNS(t *testing.T) {
	bed := netnstest.New(t)
	const group = 7
	nftTable(t, bed.NetnsPath, randName("audit_"), fmt.Sprintf(`
	chain o {
		type filter hook output priority 0; policy accept;
		udp dport 4242 log group %d prefix "ph deny out unmanaged" drop
	}`, group))
	ns, err := os.Open(bed.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	l := New(Options{})
	defer l.Close()
	runSource(t, &NFLOG{Group: group, NetNS: int(ns.Fd())}, l)
	waitFor(t, "a record from the other namespace", func() bool {
		send(bed.Command(t.Context(), "bash", "-c", fmt.Sprintf("echo hi >/dev/udp/%s/4242", bed.DeviceV4)))
		return len(l.Query(Filter{})) > 0
	})
	r := l.Query(Filter{})[0]
	if r.App != "unmanaged" || r.Src != bed.GatewayV4 || r.Dst != bed.DeviceV4 || r.DstPort != 4242 || r.OutIface != bed.InetLink {
		t.Errorf("record %+v, want unmanaged %v -> %v:4242 out of %s", r, bed.GatewayV4, bed.DeviceV4, bed.InetLink)
	}
	// Root's packet: the kernel reports uid 0.
	if r.UID == nil || *r.UID != 0 {
		t.Errorf("record UID = %v, want 0", r.UID)
	}
}

// TestNFLOGGroupTaken: only one reader can bind a group in a namespace; the
// other's Run fails at once instead of reading nothing.
func TestNFLOGGroupTaken(t *testing.T) {
	netnstest.RequireDevice(t)
	const group = 101
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, 2)
	for range 2 {
		l := New(Options{})
		defer l.Close()
		go func() { errs <- (&NFLOG{Group: group}).Run(ctx, l) }()
	}
	var first error
	select {
	case first = <-errs:
	case <-time.After(10 * time.Second):
		t.Fatal("both readers bound the same group")
	}
	// go-nflog flattens the errno into text.
	if first == nil || !strings.Contains(first.Error(), unix.EPERM.Error()) {
		t.Errorf("second reader's Run error = %v, want %q", first, unix.EPERM.Error())
	}
	t.Logf("err: %v", first)
	cancel()
	if err := <-errs; err != nil {
		t.Errorf("first reader's Run after cancel = %v, want nil", err)
	}
}
