// Package logprefix defines the NFLOG prefix pinhole's firewall writes on each
// logged packet, so the audit reader can tell who was denied and how.
package logprefix

import (
	"fmt"
	"strings"
)

// Verdict is what the firewall did with the logged packet.
type Verdict string

const (
	// Deny: the packet was rejected or dropped.
	Deny Verdict = "deny"
	// Audit: audit mode; the packet would have been denied and was accepted.
	Audit Verdict = "audit"
)

// Direction of the logged packet relative to the device.
type Direction string

const (
	Out Direction = "out"
	In  Direction = "in"
)

// Prefix is the parsed form of an NFLOG prefix.
type Prefix struct {
	Verdict   Verdict
	Direction Direction
	// Identity is an app name, "system" or "unmanaged".
	Identity string
}

const magic = "ph"

// MaxLen is the longest prefix nftables accepts in a log statement.
const MaxLen = 127

// String formats p as "ph <verdict> <dir> <identity>".
func (p Prefix) String() string {
	return magic + " " + string(p.Verdict) + " " + string(p.Direction) + " " + p.Identity
}

// Parse reads a prefix written by String. NFLOG may deliver the prefix with a
// trailing NUL or space; both are ignored.
func Parse(s string) (Prefix, error) {
	s = strings.TrimRight(s, "\x00 ")
	f := strings.Fields(s)
	if len(f) != 4 || f[0] != magic {
		return Prefix{}, fmt.Errorf("nflog prefix %q is not pinhole's", s)
	}
	p := Prefix{Verdict: Verdict(f[1]), Direction: Direction(f[2]), Identity: f[3]}
	switch p.Verdict {
	case Deny, Audit:
	default:
		return Prefix{}, fmt.Errorf("nflog prefix %q: unknown verdict %q", s, f[1])
	}
	switch p.Direction {
	case Out, In:
	default:
		return Prefix{}, fmt.Errorf("nflog prefix %q: unknown direction %q", s, f[2])
	}
	return p, nil
}
