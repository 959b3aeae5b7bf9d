package netns

import (
	"os"
	"os/exec"
	"strings"
	"testing"
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
