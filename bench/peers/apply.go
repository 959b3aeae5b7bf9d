package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/firewall"
	"github.com/pinhole-net/pinhole/internal/netns"
	"github.com/pinhole-net/pinhole/internal/policy"
)

func refuseInitialNetns() error {
	initial, err := netns.IsInitial()
	if err != nil {
		return err
	}
	if initial {
		return errors.New("refusing to run in the machine's own network namespace; bench/run starts this in its own")
	}
	return nil
}

// applyPolicy has n apps, half by uid and half by cgroup (below parent),
// each with two literal addresses, one port-scoped address, a TCP server
// port and a DNS stub: the policy of the firewall package's BenchmarkApply.
func applyPolicy(n int, parent string) *policy.Policy {
	p := &policy.Policy{Mode: policy.ModeEnforce, Unmanaged: policy.UnmanagedDeny, SystemMark: policy.DefaultSystemMark, NFLOGGroup: 100,
		System: &policy.App{Name: policy.SystemName, Identity: policy.Identity{Kind: policy.ByMark, Mark: policy.DefaultSystemMark},
			Addrs: []policy.AddrRule{{Addr: netip.MustParseAddr("198.18.0.53"), Ports: policy.BothProtocols(53)}}}}
	for i := range n {
		a := &policy.App{Name: fmt.Sprintf("app%04d", i), DNSPort: uint16(20000 + i), TCPServerPorts: []uint16{uint16(30000 + i)},
			Addrs: []policy.AddrRule{
				{Addr: netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})},
				{Addr: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})},
				{Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Ports: policy.BothProtocols(443)},
			}}
		if i%2 == 0 {
			a.Identity = policy.Identity{Kind: policy.ByUID, UID: uint32(50000 + i)}
		} else {
			a.Identity = policy.Identity{Kind: policy.ByCgroup, Cgroup: fmt.Sprintf("%s/app%04d", parent, i)}
		}
		p.Apps = append(p.Apps, a)
	}
	return policy.Finish(p)
}

// apply times firewall.Apply of the policy for each app count against
// `nft -f` of a file that deletes the table and loads the one Apply made
// (as `nft list table` prints it), one transaction each, alternating.
// It prints one line per repetition: apps, pinhole ms, nft ms.
func apply(args []string) error {
	fs := flag.NewFlagSet("apply", flag.ExitOnError)
	appsFlag := fs.String("apps", "1,100,1000", "comma-separated app counts")
	reps := fs.Int("reps", 5, "repetitions per app count")
	dir := fs.String("dir", os.TempDir(), "directory for the dumped rulesets")
	fs.Parse(args)
	if err := refuseInitialNetns(); err != nil {
		return err
	}
	var counts []int
	for _, s := range strings.Split(*appsFlag, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("-apps: bad count %q", s)
		}
		counts = append(counts, n)
	}
	// Real (empty) cgroups: nft prints a cgroup id as the path of its
	// directory and resolves it back when loading.
	parent := fmt.Sprintf("pinhole-bench-%d", os.Getpid())
	defer cgroup.Remove(parent)
	for _, n := range counts {
		p := applyPolicy(n, parent)
		for _, a := range p.Apps {
			if a.Identity.Kind == policy.ByCgroup {
				if err := cgroup.Create(a.Identity.Cgroup); err != nil {
					return err
				}
			}
		}
		fw, err := firewall.New(firewall.Options{})
		if err != nil {
			return err
		}
		err = applyRuns(fw, p, n, *reps, *dir)
		fw.Remove()
		fw.Close()
		if err != nil {
			return fmt.Errorf("%d apps: %w", n, err)
		}
	}
	return cgroup.Remove(parent)
}

func applyRuns(fw *firewall.Firewall, p *policy.Policy, n, reps int, dir string) error {
	if err := fw.Apply(p, nil); err != nil {
		return err
	}
	dump, err := exec.Command("nft", "list", "table", "inet", "pinhole").Output()
	if err != nil {
		return fmt.Errorf("nft list table: %w", err)
	}
	file := filepath.Join(dir, fmt.Sprintf("pinhole-%d-apps.nft", n))
	// Declaring the table first makes the delete succeed even when it is gone.
	text := append([]byte("table inet pinhole\ndelete table inet pinhole\n"), loadable(dump)...)
	if err := os.WriteFile(file, text, 0o644); err != nil {
		return err
	}
	want, err := countTable()
	if err != nil {
		return err
	}
	var ph, nf []float64
	for range reps {
		start := time.Now()
		if err := fw.Apply(p, nil); err != nil {
			return err
		}
		ph = append(ph, ms(time.Since(start)))
		start = time.Now()
		if out, err := exec.Command("nft", "-f", file).CombinedOutput(); err != nil {
			return fmt.Errorf("nft -f %s: %w: %s", file, err, firstLines(out, 5))
		}
		nf = append(nf, ms(time.Since(start)))
		fmt.Printf("apply\tapps=%d\tpinhole_ms=%.3f\tnft_ms=%.3f\n", n, ph[len(ph)-1], nf[len(nf)-1])
	}
	got, err := countTable()
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("nft -f %s loaded %+v, Apply %+v", file, got, want)
	}
	fmt.Printf("# apps=%d: %d chains, %d rules, %d named sets and maps, %d elements; nft text %d bytes; medians pinhole %.1f ms, nft -f %.1f ms\n",
		n, want.chains, want.rules, want.sets, want.elements, len(text), median(ph), median(nf))
	return nil
}

type tableCount struct{ chains, rules, sets, elements int }

// countTable counts what the table holds, read over netlink (nft's listing
// resolves every cgroup id by walking the cgroup tree, which takes minutes
// at 1000 apps). Anonymous sets are left out: nft -f adds one per redirect.
func countTable() (tableCount, error) {
	var n tableCount
	c, err := nftables.New()
	if err != nil {
		return n, err
	}
	t := &nftables.Table{Name: "pinhole", Family: nftables.TableFamilyINet}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return n, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != t.Name {
			continue
		}
		n.chains++
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return n, fmt.Errorf("rules of %s: %w", ch.Name, err)
		}
		n.rules += len(rules)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return n, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		n.sets++
		els, err := c.GetSetElements(s)
		if err != nil {
			return n, fmt.Errorf("elements of %s: %w", s.Name, err)
		}
		n.elements += len(els)
	}
	return n, nil
}

// redirectRule is a redirect without a protocol match in the same rule
// (pinhole's dns_redirect chain is entered for TCP and UDP only), which nft
// prints but refuses to parse.
var redirectRule = regexp.MustCompile(`(?m)^(\s+)(.*?)(counter packets \d+ bytes \d+ )?(redirect to :\d+)`)

// loadable makes `nft list table` output loadable by nft -f: the redirect
// rules get the protocol match nft requires (a two-element set).
func loadable(dump []byte) []byte {
	return redirectRule.ReplaceAll(dump, []byte("${1}${2}meta l4proto { tcp, udp } ${3}${4}"))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func firstLines(b []byte, n int) string {
	l := strings.SplitN(strings.TrimSpace(string(b)), "\n", n+1)
	return strings.Join(l[:min(n, len(l))], "\n")
}
