// Package cgroup finds the cgroup v2 hierarchy and manages directories in it.
// Paths ("rel") are relative to the cgroup2 root, like "pinhole/weather" or
// "system.slice/weather.service"; "" is the root itself. The level of a path
// (its number of components) and its id (the directory's inode number) are
// what nftables' `socket cgroupv2 level L` matches.
package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Validate checks that rel is a clean relative cgroup path: no leading or
// trailing slash, no empty, "." or ".." components. "" (the root) is valid.
func Validate(rel string) error {
	if rel == "" {
		return nil
	}
	if strings.HasPrefix(rel, "/") {
		return fmt.Errorf("cgroup path %q: must be relative to the cgroup2 root (no leading /)", rel)
	}
	if strings.ContainsRune(rel, 0) {
		return fmt.Errorf("cgroup path %q: contains a NUL byte", rel)
	}
	for i, c := range strings.Split(rel, "/") {
		switch c {
		case "":
			return fmt.Errorf("cgroup path %q: component %d is empty", rel, i+1)
		case ".", "..":
			return fmt.Errorf("cgroup path %q: component %d is %q", rel, i+1, c)
		}
		if len(c) > 255 {
			return fmt.Errorf("cgroup path %q: component %d is longer than 255 bytes", rel, i+1)
		}
	}
	return nil
}

// Level is the number of components of rel: 0 for the root, 1 for "a",
// 2 for "a/b". It is the level nftables' `socket cgroupv2 level` compares at.
func Level(rel string) (int, error) {
	if err := Validate(rel); err != nil {
		return 0, err
	}
	if rel == "" {
		return 0, nil
	}
	return strings.Count(rel, "/") + 1, nil
}

// ParseMountinfo returns the mount point of the cgroup2 hierarchy from the
// contents of /proc/PID/mountinfo. With several cgroup2 mounts it prefers
// /sys/fs/cgroup, then /sys/fs/cgroup/unified (hybrid layout), then the first
// one that shows the whole hierarchy (mount root "/").
func ParseMountinfo(r io.Reader) (string, error) {
	var found []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		// "36 35 98:0 /root /mnt rw,noatime master:1 - cgroup2 cgroup2 rw"
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			if len(fields) == 0 {
				continue
			}
			return "", fmt.Errorf("mountinfo line %d: no \" - \" separator before the filesystem type", line)
		}
		if fields[sep+1] != "cgroup2" || fields[3] != "/" {
			continue
		}
		found = append(found, unescapeMountinfo(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no cgroup2 filesystem is mounted (mountinfo has no cgroup2 entry with root /)")
	}
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, f := range found {
			if f == want {
				return f, nil
			}
		}
	}
	return found[0], nil
}

// unescapeMountinfo decodes the octal escapes (\040 for space and so on) the
// kernel writes for whitespace and backslashes in mount points.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// ParseProcCgroup returns the cgroup v2 path, relative to the root, from the
// contents of /proc/PID/cgroup (its "0::/path" line).
func ParseProcCgroup(data []byte) (string, error) {
	for i, line := range bytes.Split(data, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("0::"))
		if !ok {
			continue
		}
		p := string(rest)
		if !strings.HasPrefix(p, "/") {
			return "", fmt.Errorf("cgroup file line %d: v2 path %q does not start with /", i+1, p)
		}
		// A process outside the reader's cgroup namespace shows as "/../x";
		// a removed cgroup gets " (deleted)" appended.
		p = strings.TrimPrefix(p, "/")
		if err := Validate(p); err != nil {
			return "", fmt.Errorf("cgroup file line %d: %w", i+1, err)
		}
		return p, nil
	}
	return "", fmt.Errorf("cgroup file has no cgroup v2 (\"0::\") line")
}
