package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-net/pinhole/internal/lab"
)

// labTestPrefix starts the names of the labs these tests build; the test
// binary's pid follows.
const labTestPrefix = "phct-"

var (
	labBinOnce sync.Once
	labBinDir  string
	labBinErr  error
	sweepOnce  sync.Once
)

// labBinaries builds pinhole and pinholed, as the README tells people to.
func labBinaries(t *testing.T) (pinhole string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates network namespaces, a veth pair and cgroups")
	}
	if req, _ := lab.Missing(lab.Tools(), lab.FindTool); len(req) > 0 {
		t.Fatalf("the lab's programs are missing (CI must install them): %v", &lab.MissingError{Tools: req})
	}
	sweepOnce.Do(sweepTestLabs)
	labBinOnce.Do(func() {
		// Named after this binary's pid: the next run removes it (there
		// is no TestMain here to do it at the end).
		labBinDir = filepath.Join(os.TempDir(), binDirPrefix+strconv.Itoa(os.Getpid()))
		if labBinErr = os.MkdirAll(labBinDir, 0o700); labBinErr != nil {
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goBin, "build", "-o", labBinDir+"/",
			"github.com/pinhole-net/pinhole/cmd/pinhole", "github.com/pinhole-net/pinhole/cmd/pinholed").CombinedOutput()
		if err != nil {
			labBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if labBinErr != nil {
		t.Fatal(labBinErr)
	}
	return filepath.Join(labBinDir, "pinhole")
}

// binDirPrefix names the directories the binaries are built into.
const binDirPrefix = "pinhole-lab-cli-test-"

// sweepTestLabs removes labs and binaries of earlier test binaries.
func sweepTestLabs() {
	if ents, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range ents {
			pid, ok := strings.CutPrefix(e.Name(), binDirPrefix)
			if _, err := os.Stat("/proc/" + pid); ok && err != nil {
				os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), labTestPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSuffix(e.Name(), "-device"), "-internet")
		lab.Down(context.Background(), lab.Layout{Name: name}, nil)
	}
}

// testLabName names a lab of this test and removes it at the end.
func testLabName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name := labTestPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if _, err := lab.Down(context.Background(), lab.Layout{Name: name}, nil); err != nil {
			t.Errorf("remove lab %s: %v", name, err)
		}
	})
	return name
}

// pinholeCmd runs the built pinhole with args and returns its output and
// exit code.
func pinholeCmd(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("pinhole %v: %v\n%s", args, err, out)
	return "", 0
}

func noLeftovers(t *testing.T, name string) {
	t.Helper()
	if left := lab.Leftovers(lab.Layout{Name: name}); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
}

// TestLabDemoCommand runs the README's demo command: every attempt must
// come out as the policy says, and nothing of the lab may remain.
func TestLabDemoCommand(t *testing.T) {
	bin := labBinaries(t)
	name := testLabName(t)
	out, code := pinholeCmd(t, bin, "lab", "demo", "--lab-name", name)
	if code != 0 {
		t.Errorf("pinhole lab demo: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"== all 19 attempts came out as the policy says",
		"ALLOWED  telemetry -> contoso-hub.azure-devices.net:8883, MQTT over TLS",
		"DENIED   intruder -> api.contoso.example:443, HTTPS: DNS answered NXDOMAIN",
		"== pinhole status --socket /run/" + name + "/api.sock",
		"== pinhole firewall rules --socket",
		"== pinhole audit --socket",
		"lab \"" + name + "\" removed: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "MISMATCH") || strings.Contains(out, "unknown command") {
		t.Errorf("output:\n%s", out)
	}
	noLeftovers(t, name)
}

// TestLabDemoInterrupt: Ctrl-C in the middle of the demo removes the lab.
func TestLabDemoInterrupt(t *testing.T) {
	bin := labBinaries(t)
	name := testLabName(t)
	cmd := exec.Command(bin, "lab", "demo", "--lab-name", name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if !sent && strings.HasPrefix(sc.Text(), "== the apps try things") {
			cmd.Process.Signal(syscall.SIGINT)
			sent = true
		}
	}
	err = cmd.Wait()
	if !sent {
		t.Fatalf("the demo never got to the attempts:\n%s", out.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(out.String(), "== interrupted") {
		t.Errorf("interrupted demo: %v, want exit status 130 and a word about it:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "== removing the lab") || !strings.Contains(out.String(), "removed: ") {
		t.Errorf("the interrupted demo did not remove the lab:\n%s", out.String())
	}
	noLeftovers(t, name)
}

// TestLabCommands: up with a config of the user's own (examples/lab),
// status, exec as an app (allowed and denied), shell, down.
func TestLabCommands(t *testing.T) {
	bin := labBinaries(t)
	for _, tool := range []string{"curl", "mosquitto_pub"} {
		if _, err := lab.FindTool(tool); err != nil {
			t.Fatalf("%s is missing (CI must install it): %v", tool, err)
		}
	}
	name := testLabName(t)
	cfg, err := filepath.Abs("../../examples/lab/device.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := "--lab-name=" + name
	if out, code := pinholeCmd(t, bin, "lab", "up", n, "--config", cfg); code != 0 {
		t.Fatalf("lab up: exit %d\n%s", code, out)
	}
	if out, code := pinholeCmd(t, bin, "lab", "up", n); code == 0 || !strings.Contains(out, "already up") {
		t.Errorf("second lab up: exit %d\n%s", code, out)
	}
	out, code := pinholeCmd(t, bin, "lab", "status", n)
	if code != 0 || !regexp.MustCompile(`weather\s+uid 64201\s+`+regexp.QuoteMeta(filepath.Dir(cfg))).MatchString(out) ||
		!regexp.MustCompile(`kiosk\s+cgroup `+name+`/apps/kiosk, running as uid 64202`).MatchString(out) {
		t.Errorf("lab status: exit %d\n%s", code, out)
	}
	for _, tt := range []struct {
		app, url string
		code     int
	}{
		{"weather", "https://api.weather.fabrikam.example/today", 0},
		{"weather", "https://a.tiles.fabrikam.example/1/2/3.png", 0},
		{"weather", "https://kiosk.fabrikam.example/", 6}, // curl: could not resolve host
		{"kiosk", "https://kiosk.fabrikam.example/", 0},
		{"kiosk", "http://kiosk.fabrikam.example/", 7}, // port 80 is not in the manifest: refused
	} {
		out, code := pinholeCmd(t, bin, "lab", "exec", n, "--app", tt.app, "--", "curl", "-sS", "-m", "5", tt.url)
		if code != tt.code {
			t.Errorf("curl %s as %s: exit %d, want %d\n%s", tt.url, tt.app, code, tt.code, out)
		}
	}
	out, code = pinholeCmd(t, bin, "lab", "exec", n, "--app", "weather", "--", "mosquitto_pub", "--cafile", "/run/"+name+"/ca.crt",
		"-h", "fabrikam-hub.azure-devices.net", "-p", "8883", "-t", "devices/d1/messages/events/", "-m", "hello")
	if code != 0 {
		t.Errorf("mosquitto_pub as weather: exit %d\n%s", code, out)
	}
	shell := exec.Command(bin, "lab", "shell", n, "--app", "weather")
	shell.Stdin = strings.NewReader("id -u\necho \"$PINHOLE_LAB_APP\"\nexit 3\n")
	shell.Env = append(os.Environ(), "SHELL=/bin/bash")
	sout, err := shell.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !regexp.MustCompile(`(?m)^64201$`).Match(sout) ||
		!regexp.MustCompile(`(?m)^weather$`).Match(sout) || !strings.Contains(string(sout), "[lab "+name+" device, weather]") {
		t.Errorf("lab shell --app weather: %v\n%s", err, sout)
	}
	out, code = pinholeCmd(t, bin, "lab", "down", n)
	if code != 0 || !strings.Contains(out, "removed: ") {
		t.Errorf("lab down: exit %d\n%s", code, out)
	}
	noLeftovers(t, name)
	out, code = pinholeCmd(t, bin, "lab", "down", n)
	if code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Errorf("second lab down: exit %d\n%s", code, out)
	}
	if out, code := pinholeCmd(t, bin, "lab", "status", n); code == 0 || !strings.Contains(out, "no lab") {
		t.Errorf("status without a lab: exit %d\n%s", code, out)
	}
}
