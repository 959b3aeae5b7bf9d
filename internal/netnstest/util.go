package netnstest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// poll calls cond until it returns true or timeout passes, checking often at
// first and then every 50ms.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// WaitFor polls cond until it returns true; it fails the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
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
