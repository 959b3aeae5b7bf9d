package netnstest

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestIdentityInNftables checks, with the nft CLI inside the device
// namespace, that App.CgroupID and Level are what the kernel matches and that
// each Ident variant is seen by exactly the matching rules.
func TestIdentityInNftables(t *testing.T) {
	b := New(t)
	app := NewApp(t, "nftapp")
	if app.NftPath() == "" {
		t.Skip("cgroup2 root is not below /sys/fs/cgroup; nft cannot name the cgroup")
	}
	table := "netnstest_" + randHex(3)
	Exec(t, "nft", "add", "table", "inet", table)
	t.Cleanup(func() { run("nft", "delete", "table", "inet", table) })
	Exec(t, "nft", "add", "chain", "inet", table, "out", "{ type filter hook output priority 0; policy accept; }")
	dbg := Exec(t, "nft", "--debug=netlink", "add", "rule", "inet", table, "out",
		"ip", "daddr", b.PublicV4.String(), "socket", "cgroupv2", "level", strconv.Itoa(app.Level), `"`+app.NftPath()+`"`,
		"counter", "comment", "cg")
	// The id is compared as a 64-bit value, printed as two 32-bit words.
	want := fmt.Sprintf("0x%08x 0x%08x", uint32(app.CgroupID), uint32(app.CgroupID>>32))
	if !strings.Contains(dbg, want) {
		t.Errorf("nft resolved the cgroup to another id: want %s (id %d) in\n%s", want, app.CgroupID, dbg)
	}
	Exec(t, "nft", "add", "rule", "inet", table, "out",
		"ip", "daddr", b.PublicV4.String(), "meta", "skuid", strconv.Itoa(int(app.UID)), "counter", "comment", "uid")

	web := b.HTTP(t, netip.AddrPortFrom(b.PublicV4, 80))
	counter := regexp.MustCompile(`counter packets (\d+) .*comment "(\w+)"`)
	counts := func() map[string]int {
		m := map[string]int{}
		for _, mm := range counter.FindAllStringSubmatch(Exec(t, "nft", "list", "chain", "inet", table, "out"), -1) {
			m[mm[2]], _ = strconv.Atoi(mm[1])
		}
		return m
	}
	for _, tc := range []struct {
		id      Ident
		cg, uid bool
	}{
		{Full, true, true},
		{Ident{UID: true}, false, true},
		{Ident{Cgroup: true}, true, false},
		{Ident{}, false, false},
	} {
		before := counts()
		out, err := app.CommandAs(context.Background(), tc.id, "curl", "-sS", "-m", "5", "http://"+web.Addr.String()+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("%+v: curl: %v\n%s", tc.id, err, out)
		}
		after := counts()
		if got := after["cg"] > before["cg"]; got != tc.cg {
			t.Errorf("%+v: cgroup rule matched = %v, want %v", tc.id, got, tc.cg)
		}
		if got := after["uid"] > before["uid"]; got != tc.uid {
			t.Errorf("%+v: uid rule matched = %v, want %v", tc.id, got, tc.uid)
		}
	}
}
