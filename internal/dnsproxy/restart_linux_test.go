package dnsproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/learned"
	"github.com/pinhole-net/pinhole/internal/netnstest"
)

// roleDaemon is pinholed's DNS part in a process of its own: restore the
// learned state, apply the firewall with it, then start the stubs, in that
// order. Its argument is a JSON spec.
func roleDaemon(ctx context.Context, args []string, r *netnstest.Reporter) error {
	if len(args) != 1 {
		return fmt.Errorf("want one JSON spec, got %d arguments", len(args))
	}
	var s spec
	if err := json.Unmarshal([]byte(args[0]), &s); err != nil {
		return err
	}
	p, err := s.policy()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fw, err := firewall.New(firewall.Options{Logger: log})
	if err != nil {
		return err
	}
	defer fw.Close()
	store := learned.New(learned.Options{Limits: learned.LimitsFrom(p.DNS), StateDir: s.StateDir, Logger: log})
	n, err := store.Restore(p)
	if err != nil {
		log.Warn("restore learned state", "err", err)
	}
	elems := store.Elements(p, time.Now())
	if err := fw.Apply(p, elems); err != nil {
		return err
	}
	log.Info("restored", "entries", n, "elements", len(elems))
	px, err := New(Options{Policy: p, Store: store, Inserter: fw, Logger: log})
	if err != nil {
		return err
	}
	if err := px.Start(); err != nil {
		return err
	}
	r.Ready("ready")
	<-ctx.Done()
	px.Close()
	return store.Close()
}

// TestRestart: kill -9 the DNS part and start it again. What it learned is
// in the kernel sets again before its stubs answer anything, even when the
// sets were emptied meanwhile, and no destination the policy does not allow
// opens at any moment of the restart.
func TestRestart(t *testing.T) {
	l := newLab(t)
	l.addApp(t, "first", false, "www.lab.example", "*.cdn.lab.example")
	l.spec.StateDir = t.TempDir()
	js, err := json.Marshal(l.spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fw, err := firewall.New(firewall.Options{})
		if err != nil {
			t.Errorf("open firewall for cleanup: %v", err)
			return
		}
		if t.Failed() {
			out, _ := exec.Command("nft", "list", "table", "inet", firewall.TableName).CombinedOutput()
			t.Logf("table at failure:\n%s", tail(string(out), 80))
		}
		fw.Remove()
		fw.Close()
	})

	d1 := netnstest.StartRole(t, "dnsproxy-daemon", string(js))
	if r := l.curl(t, "first", "www.lab.example"); r.code != 0 {
		t.Fatalf("curl www.lab.example: exit %d: %s", r.code, r.out)
	}
	if d := l.dig(t, "first", "img.cdn.lab.example"); d.status != "NOERROR" {
		t.Fatalf("dig img.cdn.lab.example: %q", d.status)
	}

	// Probe, from before the kill to after the restart: the app connecting to
	// an address it never resolved, and an unmanaged process connecting to
	// one the app learned. Neither may ever get through.
	stop := make(chan struct{})
	var probes, opened int
	var openedWhat []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range []*exec.Cmd{
				l.apps["first"].CommandAs(context.Background(), l.ident("first"), "curl", "-s", "-o", "/dev/null", "--max-time", "1", "http://"+l.addr["other"].String()+"/"),
				exec.Command("curl", "-s", "-o", "/dev/null", "--max-time", "1", "http://"+l.addr["www"].String()+"/"),
			} {
				probes++
				if c.Run() == nil {
					opened++
					openedWhat = append(openedWhat, c.String())
				}
			}
		}
	})

	syscall.Kill(d1.Pid(), syscall.SIGKILL)
	d1.Stop()
	// The kernel keeps the table and its elements; empty the app's sets so
	// that only the restore can bring the addresses back.
	for _, set := range []string{"v4_first", "v6_first", "v4p_first", "v6p_first"} {
		if out, err := exec.Command("nft", "flush", "set", "inet", firewall.TableName, set).CombinedOutput(); err != nil {
			t.Fatalf("nft flush set %s: %v: %s", set, err, out)
		}
	}
	if r := l.curl(t, "first", l.addr["www"].String()); r.code != 7 {
		t.Fatalf("curl to www's address with emptied sets: exit %d, want 7", r.code)
	}

	netnstest.StartRole(t, "dnsproxy-daemon", string(js))
	// Before any DNS query: the sets hold what was learned.
	ro, err := firewall.New(firewall.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	els, err := ro.Elements("first")
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Addr
	for _, e := range els {
		got = append(got, e.Addr)
	}
	for _, n := range []string{"www", "www6", "img"} {
		if !slices.Contains(got, l.addr[n]) {
			t.Errorf("after restart, before any query: %s (%s) not in first's sets %v", n, l.addr[n], got)
		}
	}
	if r := l.curl(t, "first", l.addr["www"].String()); r.code != 0 {
		t.Errorf("curl to www's address after restart, before any query: exit %d: %s", r.code, r.out)
	}
	if r := l.curl(t, "first", "www.lab.example"); r.code != 0 {
		t.Errorf("curl www.lab.example after restart: exit %d: %s", r.code, r.out)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d probes during the restart", probes)
	if probes < 4 || opened != 0 {
		t.Errorf("%d of %d probes opened a connection: %v", opened, probes, openedWhat)
	}
	_ = time.Now
}
