package firewall

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// elemListLen returns the length of the NFTA_SET_ELEM_LIST_ELEMENTS
// attribute of a NEWSETELEM message.
func elemListLen(t *testing.T, m netlink.Message) int {
	t.Helper()
	b := m.Data[4:]
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ unix.NLA_F_NESTED
		if typ == unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			return l
		}
		b = b[align4(l):]
	}
	t.Fatal("no element list in message")
	return 0
}

func TestElemBytesMatchesEncoding(t *testing.T) {
	t.Parallel()
	v4 := newAppSet("a", setV4)
	v6p := newAppSet("a", setV6Port)
	vm := &nftables.Set{Name: "m", IsMap: true, KeyType: nftables.TypeCGroupV2, DataType: nftables.TypeVerdict}
	dm := &nftables.Set{Name: "d", IsMap: true, KeyType: nftables.TypeUID, DataType: nftables.TypeInetService}
	tests := []struct {
		name string
		set  *nftables.Set
		elem nftables.SetElement
	}{
		{"v4", v4, nftables.SetElement{Key: addr("198.18.0.1").AsSlice()}},
		{"v4 timeout", v4, nftables.SetElement{Key: addr("198.18.0.1").AsSlice(), Timeout: time.Minute}},
		{"v6 port timeout", v6p, nftables.SetElement{Key: keyAddrPort(addr("2001:db8::1"), 6, 443), Timeout: time.Hour}},
		{"verdict", vm, gotoElem(ne64(12345), "out_a-rather-long-app-name_0123")},
		{"data", dm, nftables.SetElement{Key: ne32(1000), Val: be16(5300)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := *tt.set
			s.Table, s.ID = table, 1
			for _, n := range []int{1, 7} {
				elems := slices.Repeat([]nftables.SetElement{tt.elem}, n)
				tx := newTxn()
				if err := tx.do("add", func(c *nftables.Conn) error { return c.SetAddElements(&s, elems) }); err != nil {
					t.Fatal(err)
				}
				want := 4 + n*elemBytes(&s, tt.elem)
				if got := elemListLen(t, tx.msgs[0]); got != want {
					t.Errorf("%d elements: list attribute is %d bytes, elemBytes says %d", n, got, want)
				}
			}
		})
	}
}

func TestChunkElemsStaysUnderLimit(t *testing.T) {
	t.Parallel()
	for _, k := range setKinds {
		s := newAppSet("app", k)
		s.Table, s.ID = table, 1
		var elems []nftables.SetElement
		for i := range 10000 {
			e := Element{App: "app", Addr: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Timeout: time.Hour}
			if k == setV6 || k == setV6Port {
				e.Addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			}
			if k == setV4Port || k == setV6Port {
				e.Proto, e.Port = policy.TCP, 443
			}
			elems = append(elems, e.setElement())
		}
		chunks := chunkElems(s, elems)
		total := 0
		tx := newTxn()
		for _, c := range chunks {
			total += len(c)
			if err := tx.do("add", func(enc *nftables.Conn) error { return enc.SetAddElements(s, c) }); err != nil {
				t.Fatal(err)
			}
		}
		if total != len(elems) {
			t.Errorf("%s: chunks hold %d elements, want %d", s.Name, total, len(elems))
		}
		for i, m := range tx.msgs {
			if l := elemListLen(t, m); l > maxElemBytes+4 || l > 0xffff {
				t.Errorf("%s: chunk %d element list is %d bytes", s.Name, i, l)
			}
		}
		t.Logf("%s: %d elements in %d chunks", s.Name, len(elems), len(chunks))
	}
}

func TestTxnRejectsOversizedMessage(t *testing.T) {
	t.Parallel()
	s := newAppSet("a", setV4)
	s.Table, s.ID = table, 1
	elems := make([]nftables.SetElement, 3000) // 84 KiB: would wrap the 16-bit length
	for i := range elems {
		elems[i] = nftables.SetElement{Key: []byte{198, 18, byte(i >> 8), byte(i)}, Timeout: time.Minute}
	}
	tx := newTxn()
	err := tx.do("add", func(c *nftables.Conn) error { return c.SetAddElements(s, elems) })
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want message too large", err)
	}
}

// buildRules builds the table for p without a kernel and decodes the rules
// from the encoded messages.
func buildRules(t *testing.T, p *policy.Policy) map[string][]Rule {
	t.Helper()
	m, err := newModel(p, fixedCgroupID(77), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tx := newTxn()
	var id uint32
	if _, err := buildTable(tx, m, nil, &id); err != nil {
		t.Fatal(err)
	}
	out := map[string][]Rule{}
	for _, msg := range tx.msgs {
		if msg.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE) {
			continue
		}
		chain, r, err := parseRule(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := decodeRule(chain, r, nil)
		if !ok {
			t.Errorf("rule %q in %s not fully decoded: %s", d.Comment, chain, d.Match)
		}
		out[chain] = append(out[chain], d)
	}
	return out
}

func matches(rules []Rule) []string {
	var s []string
	for _, r := range rules {
		s = append(s, r.Match)
	}
	return s
}

func TestBuildAppChain(t *testing.T) {
	t.Parallel()
	rules := buildRules(t, testPolicy(nil))
	want := []string{
		"ip daddr @v4_weather accept",
		"ip6 daddr @v6_weather accept",
		"ip daddr . meta l4proto . th dport @v4p_weather accept",
		"ip6 daddr . meta l4proto . th dport @v6p_weather accept",
		`limit rate 10/second burst 20 packets log prefix "ph deny out weather" group 100`,
		"meta l4proto tcp reject with tcp reset",
		"reject with icmpx admin-prohibited",
	}
	if diff := cmp.Diff(want, matches(rules["out_weather"])); diff != "" {
		t.Errorf("out_weather (-want +got):\n%s", diff)
	}
	for chain, rs := range rules {
		for _, r := range rs {
			if r.Comment == "" {
				t.Errorf("rule %q in %s has no comment", r.Match, chain)
			}
		}
	}
}

func TestBuildAuditAndUnmanaged(t *testing.T) {
	t.Parallel()
	rules := buildRules(t, testPolicy(func(p *policy.Policy) {
		p.Mode = policy.ModeAudit
		p.Unmanaged = policy.UnmanagedAllow
	}))
	want := []string{
		"ip daddr @v4_clock accept",
		"ip6 daddr @v6_clock accept",
		"ip daddr . meta l4proto . th dport @v4p_clock accept",
		"ip6 daddr . meta l4proto . th dport @v6p_clock accept",
		`limit rate 10/second burst 20 packets log prefix "ph audit out clock" group 100`,
		"accept",
	}
	if diff := cmp.Diff(want, matches(rules["out_clock"])); diff != "" {
		t.Errorf("out_clock (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"accept"}, matches(rules["out_unmanaged"])); diff != "" {
		t.Errorf("out_unmanaged (-want +got):\n%s", diff)
	}
	in := matches(rules["in_unmanaged"])
	if len(in) != 2 || !strings.Contains(in[0], `"ph audit in unmanaged"`) || in[1] != "accept" {
		t.Errorf("in_unmanaged = %q, want audit log then accept", in)
	}
}

func TestBuildDispatchOrder(t *testing.T) {
	t.Parallel()
	rules := buildRules(t, testPolicy(func(p *policy.Policy) {
		p.Apps = append(p.Apps, &policy.App{Name: "deep", Identity: policy.Identity{Kind: policy.ByCgroup, Cgroup: "a/b/c"}, DNSPort: 5302})
	}))
	var got []string
	for _, r := range rules["output"] {
		if r.Action == "goto" {
			got = append(got, r.Match)
		}
	}
	want := []string{
		"meta mark 0x70680000 goto out_system",
		"socket cgroupv2 level 3 @cg_deep goto out_deep",
		"socket cgroupv2 level 2 @cg_clock goto out_clock",
		"meta skuid 1001 goto out_weather",
		"goto out_unmanaged",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output dispatch (-want +got):\n%s", diff)
	}
	wantNAT := []string{
		"meta mark 0x70680000 accept",
		"meta l4proto @__set%d th dport 53 jump dns_redirect",
		"socket cgroupv2 level 3 @cg_deep redirect to :5302",
		"socket cgroupv2 level 2 @cg_clock redirect to :5301",
		"meta skuid 1001 redirect to :5300",
	}
	if diff := cmp.Diff(wantNAT, append(matches(rules["nat_output"]), matches(rules["dns_redirect"])...)); diff != "" {
		t.Errorf("nat (-want +got):\n%s", diff)
	}
}

func TestCommitFlags(t *testing.T) {
	t.Parallel()
	// The batch sent to the kernel asks for one ack (the last message) and
	// for no echoes; see conn.commit.
	tx := newTxn()
	var id uint32
	m, err := newModel(testPolicy(nil), fixedCgroupID(1), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildTable(tx, m, nil, &id); err != nil {
		t.Fatal(err)
	}
	if len(tx.msgs) != len(tx.descs) {
		t.Fatalf("%d messages, %d descriptions", len(tx.msgs), len(tx.descs))
	}
	echo := 0
	for _, msg := range tx.msgs {
		if msg.Header.Flags&unix.NLM_F_ECHO != 0 {
			echo++
		}
	}
	if echo == 0 {
		t.Fatal("encoder no longer asks for echoes; TestCommitFlags is moot")
	}
	buf := appendMsg(nil, 1, 2, 3, []byte{1, 2, 3, 4, 5})
	if len(buf) != 24 || binary.NativeEndian.Uint32(buf) != 21 {
		t.Errorf("appendMsg: len %d header length %d, want 24 and 21", len(buf), binary.NativeEndian.Uint32(buf))
	}
	t.Log(fmt.Sprintf("%d messages, %d bytes", tx.len(), tx.bytes))
}
