package lab

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMissing(t *testing.T) {
	t.Parallel()
	have := map[string]bool{"ip": true, "nsenter": true, "curl": true}
	find := func(name string) (string, error) {
		if have[name] {
			return "/usr/bin/" + name, nil
		}
		return "", errors.New("not found")
	}
	req, opt := Missing(Tools(), find)
	names := func(ts []Tool) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Binary)
		}
		return out
	}
	if diff := cmp.Diff([]string{"dnsmasq", "mosquitto"}, names(req)); diff != "" {
		t.Errorf("required (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"dig", "mosquitto_pub"}, names(opt)); diff != "" {
		t.Errorf("optional (-want +got):\n%s", diff)
	}
	if got, want := AptLine(append(req, opt...)), "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y dnsmasq-base mosquitto bind9-dnsutils mosquitto-clients"; got != want {
		t.Errorf("AptLine = %q, want %q", got, want)
	}
	msg := (&MissingError{Tools: req}).Error()
	for _, want := range []string{"dnsmasq (Debian package dnsmasq-base)", "apt-get install -y dnsmasq-base mosquitto"} {
		if !strings.Contains(msg, want) {
			t.Errorf("MissingError lacks %q:\n%s", want, msg)
		}
	}
	if req, opt := Missing(Tools(), func(n string) (string, error) { return "/bin/" + n, nil }); len(req)+len(opt) != 0 {
		t.Errorf("everything installed, still missing %v %v", req, opt)
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	l := Layout{Name: DefaultName}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	got := []string{l.Dir(), l.DeviceNetns(), l.InternetNetns(), l.Cgroup(), l.ServicesCgroup(), l.AppCgroup("webfetch"), l.ShellCgroup()}
	want := []string{"/run/pinhole-lab", "pinhole-lab-device", "pinhole-lab-internet", "pinhole-lab",
		"pinhole-lab/services", "pinhole-lab/apps/webfetch", "pinhole-lab/shell"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "../x", "Lab", "a/b", "-x", strings.Repeat("a", 32)} {
		if (Layout{Name: bad}).Validate() == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}
