package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// ReadResolvConf returns the nameservers of a resolv.conf file, port 53, in
// file order. Lines the C library would ignore are ignored; a file without
// any usable nameserver is an error that says why.
func ReadResolvConf(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read resolv.conf: %w", err)
	}
	defer f.Close()
	servers, err := parseResolvConf(io.LimitReader(f, MaxFileSize))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return servers, nil
}

func parseResolvConf(r io.Reader) ([]netip.AddrPort, error) {
	var (
		out     []netip.AddrPort
		skipped []string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if i := bytes.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(string(line))
		if len(fields) == 0 || fields[0] != "nameserver" {
			continue
		}
		if len(fields) < 2 {
			skipped = append(skipped, fmt.Sprintf("line %d: nameserver without address", n))
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("line %d: %q is not an IP address", n, fields[1]))
			continue
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() {
			skipped = append(skipped, fmt.Sprintf("line %d: %s is not a unicast address", n, a))
			continue
		}
		ap := netip.AddrPortFrom(a, DefaultUpstreamPort)
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no usable nameserver (%s)", strings.Join(skipped, "; "))
		}
		return nil, errors.New("no nameserver line")
	}
	return out, nil
}
