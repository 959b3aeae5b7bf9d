package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestIsInitial(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: reading /proc/1/ns/net needs privileges")
	}
	if os.Getenv("PINHOLE_NETNS_TEST_CHILD") == "1" {
		got, err := IsInitial()
		if err != nil {
			t.Fatal(err)
		}
		if got {
			t.Fatal("IsInitial() = true inside a new network namespace")
		}
		return
	}
	if _, err := IsInitial(); err != nil {
		t.Fatal(err)
	}
	// Run this test again in a fresh network namespace: there it must say false.
	cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^TestIsInitial$", "-test.v")
	cmd.Env = append(os.Environ(), "PINHOLE_NETNS_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child in new netns: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestIsInitial") {
		t.Fatalf("child did not run the test:\n%s", out)
	}
}

// TestDo: fn runs in the named namespace and the thread comes back, so later
// work of the test is in the test's own namespace again.
func TestDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	name := fmt.Sprintf("ph-netns-do-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	self := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	var target unix.Stat_t
	if err := unix.Stat("/run/netns/"+name, &target); err != nil {
		t.Fatal(err)
	}
	before := self()
	var inside uint64
	if err := Do("/run/netns/"+name, func() error { inside = self(); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != target.Ino {
		t.Errorf("inside Do: namespace inode %d, want %d", inside, target.Ino)
	}
	if got := self(); got != before {
		t.Errorf("after Do: namespace inode %d, want %d", got, before)
	}
	if err := Do("/run/netns/does-not-exist", func() error { return nil }); err == nil {
		t.Error("Do with a missing namespace: no error")
	}
}
