package hostname

import (
	"errors"
	"fmt"
	"strings"
)

// Kind tells how a Pattern matches names.
type Kind uint8

const (
	// Exact matches one name.
	Exact Kind = iota + 1
	// Wildcard matches every name with one or more labels in front of its
	// Name, never Name itself ("*.example.com").
	Wildcard
	// Service is a DNS-SD service type such as "_http._tcp.home". It matches
	// the service name (the PTR query) and the instances directly under it
	// (their SRV and TXT queries).
	Service
)

func (k Kind) String() string {
	switch k {
	case Exact:
		return "host"
	case Wildcard:
		return "wildcard"
	case Service:
		return "dns-sd"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Pattern is a validated, normalised host pattern.
type Pattern struct {
	Kind Kind
	// Name is the normalised name; for a Wildcard, the part after "*.".
	Name string
}

// String gives the pattern as a person writes it.
func (p Pattern) String() string {
	if p.Kind == Wildcard {
		return "*." + p.Name
	}
	return p.Name
}

// ParsePattern reads a host name, a "*.domain" wildcard or a DNS-SD service
// name, normalising it. It does not accept addresses or ports; callers
// split those off first.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, errors.New("empty host name")
	}
	if s == "*" {
		return Pattern{}, errors.New(`a lone "*" would allow every host; list the hosts, or use "*.domain"`)
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		if strings.Contains(rest, "*") {
			return Pattern{}, errors.New(`"*" may appear only once, as the whole first label`)
		}
		name, err := Normalize(rest)
		if err != nil {
			return Pattern{}, err
		}
		if !strings.Contains(name, ".") {
			return Pattern{}, fmt.Errorf("wildcard over the top-level domain %q would allow too much; use at least two labels after \"*.\"", name)
		}
		if isService(name) {
			return Pattern{}, errors.New("a DNS-SD service name cannot take a wildcard")
		}
		return Pattern{Kind: Wildcard, Name: name}, nil
	}
	if strings.Contains(s, "*") {
		return Pattern{}, errors.New(`"*" is allowed only as the whole first label, as in "*.example.com"`)
	}
	name, err := Normalize(s)
	if err != nil {
		return Pattern{}, err
	}
	if strings.HasPrefix(name, "_") {
		if err := validateService(name); err != nil {
			return Pattern{}, err
		}
		return Pattern{Kind: Service, Name: name}, nil
	}
	return Pattern{Kind: Exact, Name: name}, nil
}

// isService reports whether name has the shape "_service._tcp.domain".
func isService(name string) bool {
	return validateService(name) == nil
}

func validateService(name string) error {
	labels := strings.SplitN(name, ".", 3)
	if len(labels) < 3 {
		return fmt.Errorf("%q starts with '_' but is not a DNS-SD service name like \"_http._tcp.local\"", name)
	}
	svc, proto := labels[0], labels[1]
	if proto != "_tcp" && proto != "_udp" {
		return fmt.Errorf("DNS-SD service %q: second label must be \"_tcp\" or \"_udp\", not %q", name, proto)
	}
	if n := len(svc) - 1; n < 1 || n > 15 {
		return fmt.Errorf("DNS-SD service %q: service label %q must have 1 to 15 characters after '_' (RFC 6335)", name, svc)
	}
	if strings.HasPrefix(labels[2], "_") {
		return fmt.Errorf("DNS-SD service %q: domain part %q must not start with '_'", name, labels[2])
	}
	return nil
}

// Match reports whether the canonical query name (see CanonicalQuery)
// matches p.
func (p Pattern) Match(name string) bool {
	switch p.Kind {
	case Exact:
		return name == p.Name
	case Wildcard:
		return len(name) > len(p.Name)+1 && strings.HasSuffix(name, p.Name) && name[len(name)-len(p.Name)-1] == '.'
	case Service:
		if name == p.Name {
			return true
		}
		_, parent, ok := cutInstance(name)
		return ok && parent == p.Name
	}
	return false
}

// cutInstance splits a DNS-SD instance name into its first label and the
// service name under it. Instance labels may contain dots written as "\.",
// which the split respects.
func cutInstance(name string) (instance, parent string, ok bool) {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '.':
			return name[:i], name[i+1:], i > 0
		}
	}
	return "", "", false
}
