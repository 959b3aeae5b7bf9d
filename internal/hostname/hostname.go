// Package hostname normalises and validates DNS host names and the host
// patterns that manifests and configs use, and matches names against many
// patterns at once.
package hostname

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Limits from RFC 1035 section 2.3.4, counted on the presentation form
// without the trailing dot.
const (
	MaxNameLen  = 253
	MaxLabelLen = 63
)

// idnaProfile turns internationalised names into their ASCII form with the
// lookup rules browsers and resolvers use (UTS #46, STD3 rules).
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false))

// Normalize returns the canonical form of a host name written by a person:
// lower case, no trailing dot, internationalised labels in punycode. It
// validates the result with Validate.
func Normalize(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty host name")
	}
	if strings.HasSuffix(name, ".") && !strings.HasSuffix(name, "..") {
		name = name[:len(name)-1]
	}
	if !isASCII(name) {
		a, err := idnaProfile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("internationalised name %q: %w", name, err)
		}
		name = a
	}
	name = strings.ToLower(name)
	if err := Validate(name); err != nil {
		return "", err
	}
	return name, nil
}

// Validate checks a lower-case ASCII host name without trailing dot:
// letters, digits and hyphens in labels of 1 to 63 octets, no hyphen at
// either end of a label, at most 253 octets in all, and a top-level label
// that is not all digits. A label may start with an underscore only as a
// whole service or attribute label (RFC 8552), such as "_http" or "_tcp".
func Validate(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("name is %d octets long, more than %d", len(name), MaxNameLen)
	}
	labels := 0
	last := ""
	for rest := name; ; {
		label, tail, more := strings.Cut(rest, ".")
		if err := validateLabel(label); err != nil {
			return err
		}
		labels++
		last = label
		if !more {
			break
		}
		rest = tail
	}
	if labels > 1 && allDigits(last) {
		return fmt.Errorf("top-level label %q is all digits (a mistyped IPv4 address?)", last)
	}
	return nil
}

func validateLabel(label string) error {
	switch {
	case label == "":
		return errors.New("empty label (two dots in a row, or a leading dot)")
	case len(label) > MaxLabelLen:
		return fmt.Errorf("label %q is %d octets long, more than %d", shorten(label), len(label), MaxLabelLen)
	}
	body := label
	if label[0] == '_' {
		body = label[1:]
		if body == "" {
			return errors.New("label \"_\" has nothing after the underscore")
		}
	}
	if body[0] == '-' {
		return fmt.Errorf("label %q starts with a hyphen", label)
	}
	if body[len(body)-1] == '-' {
		return fmt.Errorf("label %q ends with a hyphen", label)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("label %q has upper-case letters (normalise first)", label)
		case c == ' ':
			return fmt.Errorf("label %q contains a space", label)
		case c == '_':
			return fmt.Errorf("label %q contains '_', which host names may not (only a whole service label like \"_http\" may start with one)", label)
		default:
			return fmt.Errorf("label %q contains %q, which host names may not", label, rune(c))
		}
	}
	return nil
}

// CanonicalQuery turns a name from a DNS message into the form patterns are
// stored in: ASCII letters lowered and the trailing dot removed. Other bytes
// are left alone, since DNS-SD instance labels may hold any text.
func CanonicalQuery(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			// strings.ToLower would also fold non-ASCII letters and turn
			// invalid UTF-8 into U+FFFD, so lower ASCII only.
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return name
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func shorten(s string) string {
	if len(s) <= 20 {
		return s
	}
	return s[:17] + "..."
}
