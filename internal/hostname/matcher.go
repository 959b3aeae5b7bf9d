package hostname

import "strings"

// Matcher finds the values attached to every pattern that matches a name.
// A lookup costs one map access for exact names and services and one per
// label for wildcards, whatever the number of patterns.
type Matcher[V any] struct {
	exact    map[string][]V
	wildcard map[string][]V
	service  map[string][]V
	n        int
}

// NewMatcher returns an empty Matcher.
func NewMatcher[V any]() *Matcher[V] {
	return &Matcher[V]{
		exact:    make(map[string][]V),
		wildcard: make(map[string][]V),
		service:  make(map[string][]V),
	}
}

// Add attaches v to pattern p. A pattern added twice keeps both values.
func (m *Matcher[V]) Add(p Pattern, v V) {
	var tbl map[string][]V
	switch p.Kind {
	case Exact:
		tbl = m.exact
	case Wildcard:
		tbl = m.wildcard
	case Service:
		tbl = m.service
	default:
		return
	}
	tbl[p.Name] = append(tbl[p.Name], v)
	m.n++
}

// Len is the number of patterns added.
func (m *Matcher[V]) Len() int { return m.n }

// AppendMatches appends to dst the values of all patterns that match the
// canonical query name (see CanonicalQuery) and returns the extended slice.
// It does not allocate when dst has room.
func (m *Matcher[V]) AppendMatches(dst []V, name string) []V {
	if name == "" {
		return dst
	}
	dst = append(dst, m.exact[name]...)
	if len(m.service) > 0 {
		dst = append(dst, m.service[name]...)
		if _, parent, ok := cutInstance(name); ok {
			dst = append(dst, m.service[parent]...)
		}
	}
	if len(m.wildcard) > 0 {
		for rest := name; ; {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			// A wildcard needs a non-empty label in front, as Pattern.Match
			// does: ".example.com" is not under "*.example.com".
			if len(rest)+1 < len(name) {
				dst = append(dst, m.wildcard[rest]...)
			}
		}
	}
	return dst
}

// Matches reports whether any pattern matches name.
func (m *Matcher[V]) Matches(name string) bool {
	var buf [4]V
	return len(m.AppendMatches(buf[:0], name)) > 0
}
