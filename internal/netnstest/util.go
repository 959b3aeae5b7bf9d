package netnstest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/wait"
)

// WaitFor polls cond until it returns true; it fails the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !wait.Until(timeout, cond) {
		t.Fatalf("condition not met within %v", timeout)
	}
}

// Exec runs a command in the current (device) namespace and returns its
// combined output; it fails the test if the command fails.
func Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
