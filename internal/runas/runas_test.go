package runas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/config"
)

type fakeUsers map[string][3]any // name -> uid, gid, groups

func (f fakeUsers) ByName(name string) (uint32, uint32, []uint32, error) {
	u, ok := f[name]
	if !ok {
		return 0, 0, nil, errors.New("unknown user " + name)
	}
	return u[0].(uint32), u[1].(uint32), u[2].([]uint32), nil
}

func (f fakeUsers) ByID(uid uint32) (uint32, []uint32, bool) {
	for _, u := range f {
		if u[0].(uint32) == uid {
			return u[1].(uint32), u[2].([]uint32), true
		}
	}
	return 0, nil, false
}

func TestResolve(t *testing.T) {
	users := fakeUsers{
		"weather": {uint32(1001), uint32(1001), []uint32{20}},
		"svc":     {uint32(1500), uint32(1600), []uint32(nil)},
	}
	byUID := config.App{Name: "a", Identity: config.Identity{Kind: config.IdentityUID, UID: 1001}}
	byBareUID := config.App{Name: "b", Identity: config.Identity{Kind: config.IdentityUID, UID: 4242}}
	byUser := config.App{Name: "c", Identity: config.Identity{Kind: config.IdentityUser, User: "svc"}}
	byCgroup := config.App{Name: "d", Identity: config.Identity{Kind: config.IdentityCgroup, Cgroup: "pinhole/d"}}
	tests := []struct {
		name    string
		app     config.App
		asUser  string
		want    Target
		wantErr string
	}{
		{name: "uid with account", app: byUID, want: Target{ChangeUser: true, UID: 1001, GID: 1001, Groups: []uint32{20}}},
		{name: "uid without account", app: byBareUID, want: Target{ChangeUser: true, UID: 4242, GID: 4242}},
		{name: "user", app: byUser, want: Target{ChangeUser: true, UID: 1500, GID: 1600}},
		{name: "cgroup as root", app: byCgroup, want: Target{Cgroup: "pinhole/d"}},
		{name: "cgroup as user", app: byCgroup, asUser: "svc", want: Target{Cgroup: "pinhole/d", ChangeUser: true, UID: 1500, GID: 1600}},
		{name: "cgroup as number", app: byCgroup, asUser: "7000", want: Target{Cgroup: "pinhole/d", ChangeUser: true, UID: 7000, GID: 7000}},
		{name: "uid app, same user", app: byUID, asUser: "weather", want: Target{ChangeUser: true, UID: 1001, GID: 1001, Groups: []uint32{20}}},
		{name: "uid app, other user", app: byUID, asUser: "svc", wantErr: "would put it outside its identity"},
		{name: "unknown user", app: config.App{Name: "e", Identity: config.Identity{Kind: config.IdentityUser, User: "ghost"}}, wantErr: `user "ghost": unknown user ghost`},
		{name: "root", app: byCgroup, asUser: "0", wantErr: "must not be root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.app, tt.asUser, users)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve() = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMain lets the test binary act as `pinhole run`: with RUNAS_TARGET set
// it becomes that target and execs the command in os.Args after "--".
func TestMain(m *testing.M) {
	if spec := os.Getenv("RUNAS_TARGET"); spec != "" {
		var target Target
		if err := json.Unmarshal([]byte(spec), &target); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		err := Exec(target, []string{"sh", "-c", "id -u; id -g; id -G; cat /proc/self/cgroup"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	os.Exit(m.Run())
}

func TestExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: changes cgroup and uid")
	}
	root := fmt.Sprintf("pinhole-runas-test-%d", os.Getpid())
	t.Cleanup(func() {
		if err := cgroup.Remove(root); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	target := Target{Cgroup: root + "/app", ChangeUser: true, UID: 40999, GID: 40998, Groups: []uint32{40997}}
	spec, _ := json.Marshal(target)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUNAS_TARGET="+string(spec))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run as %s: %v\n%s", target, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var cg string
	for _, l := range lines[3:] {
		if p, ok := strings.CutPrefix(l, "0::/"); ok {
			cg = p
		}
	}
	got := []string{lines[0], lines[1], lines[2], cg}
	want := []string{"40999", "40998", "40998 40997", root + "/app"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identity of the exec'd process (-want +got):\n%s\noutput:\n%s", diff, out)
	}
}

func TestBecomeNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs only without root")
	}
	err := Become(Target{ChangeUser: true, UID: 1})
	if err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("Become() as non-root = %v, want a needs-root error", err)
	}
}
