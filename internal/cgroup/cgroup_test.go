package cgroup

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateAndLevel(t *testing.T) {
	tests := []struct {
		rel     string
		level   int
		wantErr string
	}{
		{rel: "", level: 0},
		{rel: "a", level: 1},
		{rel: "pinhole/weather", level: 2},
		{rel: "system.slice/weather.service", level: 2},
		{rel: "a/b/c", level: 3},
		{rel: "/a", wantErr: "no leading /"},
		{rel: "a/", wantErr: "component 2 is empty"},
		{rel: "a//b", wantErr: "component 2 is empty"},
		{rel: "a/../b", wantErr: `component 2 is ".."`},
		{rel: ".", wantErr: `component 1 is "."`},
		{rel: "a\x00b", wantErr: "NUL"},
		{rel: strings.Repeat("x", 256), wantErr: "longer than 255"},
	}
	for _, tt := range tests {
		got, err := Level(tt.rel)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Level(%q) error = %v, want one containing %q", tt.rel, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.level {
			t.Errorf("Level(%q) = %d, %v; want %d", tt.rel, got, err, tt.level)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	const hybrid = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const unified = `25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	const odd = `25 22 0:23 /sub /mnt/part rw - cgroup2 cgroup2 rw
26 22 0:23 / /mnt/my\040cg rw shared:1 master:2 - cgroup2 none rw
27 22 0:23 / /sys/fs/cgroup/unified rw - cgroup2 none rw
`
	const oddNoSys = `25 22 0:23 /sub /mnt/part rw - cgroup2 cgroup2 rw
26 22 0:23 / /mnt/my\040cg rw shared:1 master:2 - cgroup2 none rw
`
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "hybrid", in: hybrid, want: "/sys/fs/cgroup/unified"},
		{name: "unified", in: unified, want: "/sys/fs/cgroup"},
		{name: "prefer standard", in: odd, want: "/sys/fs/cgroup/unified"},
		{name: "escaped, whole tree only", in: oddNoSys, want: "/mnt/my cg"},
		{name: "none", in: "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", wantErr: "no cgroup2"},
		{name: "garbage", in: "hello world\n", wantErr: "line 1"},
		{name: "empty", in: "", wantErr: "no cgroup2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mount point (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "hybrid", in: "9:name=systemd:/\n4:memory:/x\n0::/pinhole-test-1/app\n", want: "pinhole-test-1/app"},
		{name: "root", in: "0::/\n", want: ""},
		{name: "no v2", in: "4:memory:/x\n", wantErr: `no cgroup v2 ("0::") line`},
		{name: "relative", in: "0::x\n", wantErr: "does not start with /"},
		{name: "outside namespace", in: "0::/../x\n", wantErr: `".."`},
		{name: "deleted", in: "0::/a (deleted)\n", want: "a (deleted)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcCgroup([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("path (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add("40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	f.Add("26 22 0:23 / /mnt/my\\040cg rw shared:1 - cgroup2 none rw\n")
	f.Fuzz(func(t *testing.T, in string) {
		root, err := ParseMountinfo(strings.NewReader(in))
		if err == nil && root == "" {
			t.Fatal("empty mount point without an error")
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("0::/a/b\n"))
	f.Add([]byte("1:cpu:/\n0::/\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rel, err := ParseProcCgroup(in)
		if err != nil {
			return
		}
		if verr := Validate(rel); verr != nil {
			t.Fatalf("returned invalid path %q: %v", rel, verr)
		}
	})
}
