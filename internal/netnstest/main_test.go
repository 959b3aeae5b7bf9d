package netnstest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestHelperOutcome is run by TestMainReexec in a child test binary; on its
// own it does nothing.
func TestHelperOutcome(t *testing.T) {
	switch os.Getenv("NETNSTEST_HELPER") {
	case "fail":
		t.Fatal("deliberate failure")
	case "initial":
		initial, err := InInitialNetns()
		t.Logf("initial=%v err=%v", initial, err)
	}
}

// selfCommand runs this test binary through an inherited descriptor, so it
// works for any UID, with the given environment changes.
func selfCommand(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bin.Close() })
	cmd := exec.Command("/proc/self/fd/3", args...)
	cmd.ExtraFiles = []*os.File{bin}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		if v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	return cmd
}

func TestMainReexec(t *testing.T) {
	RequireDevice(t)
	// Without the device marker, Main re-executes into a new namespace and
	// passes the child's result through.
	cmd := selfCommand(t, map[string]string{envDevice: "", "NETNSTEST_HELPER": "fail"}, "-test.run=^TestHelperOutcome$")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "deliberate failure") {
		t.Fatalf("failing child: err=%v\n%s", err, out)
	}
	cmd = selfCommand(t, map[string]string{envDevice: "", "NETNSTEST_HELPER": "initial"}, "-test.run=^TestHelperOutcome$", "-test.v")
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "initial=false err=<nil>") {
		t.Fatalf("passing child: err=%v\n%s", err, out)
	}
}

func TestMainNotRoot(t *testing.T) {
	RequireDevice(t)
	cmd := selfCommand(t, map[string]string{envDevice: ""}, "-test.run=^(TestBedUpAndDown|TestAppIdentity)$", "-test.v")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := strings.Count(string(out), "needs root"); n != 2 || !strings.Contains(string(out), "--- SKIP: TestBedUpAndDown") {
		t.Fatalf("want two tests skipped with \"needs root\":\n%s", out)
	}
}
