package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMultiCall: the pinhole binary started as pinholed (a link) is the
// daemon, and under its own name the CLI.
func TestMultiCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pinhole")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Symlink("pinhole", filepath.Join(dir, "pinholed")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"pinholed": "pinholed ", "pinhole": "pinhole "} {
		args := map[string]string{"pinholed": "--version", "pinhole": "version"}
		out, err := exec.Command(filepath.Join(dir, name), args[name]).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, args[name], err, out)
		}
		if !strings.HasPrefix(string(out), want) {
			t.Errorf("%s version = %q, want it to start with %q", name, out, want)
		}
	}
}
