package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The raw file, as YAML gives it. Every leaf is a scalar so that the
// validation in parse.go converts it with a message that names its key and
// position; the struct tags are the config's keys.
type rawConfig struct {
	Profile     *rawProfile     `yaml:"profile"`
	Mode        scalar          `yaml:"mode"`
	Unmanaged   scalar          `yaml:"unmanaged"`
	SystemMark  scalar          `yaml:"system_mark"`
	Firewall    *rawFirewall    `yaml:"firewall"`
	DNS         *rawDNS         `yaml:"dns"`
	Time        *rawTime        `yaml:"time"`
	Proxy       *rawProxy       `yaml:"proxy"`
	ServiceLink *rawServiceLink `yaml:"service_link"`
	API         *rawAPI         `yaml:"api"`
	StateDir    scalar          `yaml:"state_dir"`
	Log         *rawLog         `yaml:"log"`
	Apps        []rawApp        `yaml:"apps"`
}

type rawProfile struct {
	Name            scalar   `yaml:"name"`
	Hub             scalar   `yaml:"hub"`
	NTPServers      []scalar `yaml:"ntp_servers"`
	ConnectivityURL scalar   `yaml:"connectivity_url"`
}

type rawFirewall struct {
	NFLOGGroup scalar `yaml:"nflog_group"`
	LogRate    scalar `yaml:"log_rate"`
	LogBurst   scalar `yaml:"log_burst"`
}

type rawDNS struct {
	Upstreams           []scalar `yaml:"upstreams"`
	ResolvConf          scalar   `yaml:"resolv_conf"`
	StubPortBase        scalar   `yaml:"stub_port_base"`
	TTLFloor            scalar   `yaml:"ttl_floor"`
	TTLCeiling          scalar   `yaml:"ttl_ceiling"`
	Grace               scalar   `yaml:"grace"`
	MaxAddressesPerApp  scalar   `yaml:"max_addresses_per_app"`
	MaxAddressesPerName scalar   `yaml:"max_addresses_per_name"`
	InsertTimeout       scalar   `yaml:"insert_timeout"`
	QueryTimeout        scalar   `yaml:"query_timeout"`
	AllowPrivate        []scalar `yaml:"allow_private"`
	RateLimit           scalar   `yaml:"rate_limit"`
	Burst               scalar   `yaml:"burst"`
	MaxInFlight         scalar   `yaml:"max_in_flight"`
}

type rawTime struct {
	Enabled  scalar   `yaml:"enabled"`
	Source   scalar   `yaml:"source"`
	Servers  []scalar `yaml:"servers"`
	Fallback scalar   `yaml:"fallback"`
}

type rawProxy struct {
	Enabled        scalar   `yaml:"enabled"`
	Address        scalar   `yaml:"address"`
	Port           scalar   `yaml:"port"`
	Authentication scalar   `yaml:"authentication"`
	Username       scalar   `yaml:"username"`
	Password       scalar   `yaml:"password"`
	PasswordFile   scalar   `yaml:"password_file"`
	NoProxy        []scalar `yaml:"no_proxy"`
}

type rawServiceLink struct {
	Enabled   scalar `yaml:"enabled"`
	Serial    scalar `yaml:"serial"`
	Baud      scalar `yaml:"baud"`
	Interface scalar `yaml:"interface"`
	Address   scalar `yaml:"address"`
	APIPort   scalar `yaml:"api_port"`
}

type rawAPI struct {
	Socket        scalar `yaml:"socket"`
	Group         scalar `yaml:"group"`
	MetricsListen scalar `yaml:"metrics_listen"`
}

type rawLog struct {
	Level  scalar `yaml:"level"`
	Format scalar `yaml:"format"`
}

type rawApp struct {
	Name     scalar `yaml:"name"`
	Manifest scalar `yaml:"manifest"`
	UID      scalar `yaml:"uid"`
	User     scalar `yaml:"user"`
	Cgroup   scalar `yaml:"cgroup"`
}

// scalar keeps a YAML scalar node; nil when the key is absent or null.
type scalar struct{ n *yaml.Node }

// UnmarshalYAML keeps the node; a list or mapping here is a type error,
// which the structure check (walk) has already reported with its path.
func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: not a single value", n.Line)}}
	}
	s.n = n
	return nil
}

func (s scalar) set() bool { return s.n != nil }

var scalarType = reflect.TypeFor[scalar]()

// walker checks the shape of the YAML tree against the raw structs (known
// keys, no duplicates, a mapping, list or single value where each belongs)
// and remembers each path's node for positions.
type walker struct {
	p       *parser
	nodes   map[string]*yaml.Node
	aliases bool // an alias was found
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return fmt.Sprintf("the value %q", shorten(n.Value))
	case yaml.AliasNode:
		return "an alias"
	}
	return "something else"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func shorten(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

func (w *walker) walk(path string, n *yaml.Node, t reflect.Type) {
	w.nodes[path] = n
	if n.Kind == yaml.AliasNode {
		w.aliases = true
		w.p.errorAt(path, n, "YAML aliases (*%s) are not supported in the config; write the value out", n.Value)
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == scalarType:
		switch {
		case n.Kind != yaml.ScalarNode:
			w.p.errorAt(path, n, "expected a single value, got %s", kindName(n))
		case isNull(n):
			w.p.errorAt(path, n, "no value; give one, or remove the key to get the default")
		}
	case t.Kind() == reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			w.p.errorAt(path, n, "expected a list, got %s", kindName(n))
			return
		}
		for i, item := range n.Content {
			w.walk(path+"["+strconv.Itoa(i)+"]", item, t.Elem())
		}
	case t.Kind() == reflect.Struct:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			w.p.errorAt(path, n, "expected a mapping of keys (%s), got %s", strings.Join(keysOf(t), ", "), kindName(n))
			return
		}
		fields := fieldsOf(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			name := k.Value
			kpath := join(path, name)
			if k.Kind != yaml.ScalarNode {
				w.p.errorAt(path, k, "a key must be a name, not %s", kindName(k))
				continue
			}
			if line, dup := seen[name]; dup {
				w.p.errorAt(kpath, k, "key given twice (first on line %d)", line)
				continue
			}
			seen[name] = k.Line
			w.p.keys[kpath] = k
			ft, ok := fields[name]
			if !ok {
				w.p.errorAt(kpath, k, "unknown key%s", suggest(name, keysOf(t)))
				continue
			}
			w.walk(kpath, v, ft)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldsOf maps a raw struct's keys to their types.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for f := range t.Fields() {
		if tag := yamlKey(f); tag != "" {
			m[tag] = f.Type
		}
	}
	return m
}

// keysOf lists a raw struct's keys in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if tag := yamlKey(f); tag != "" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" {
		return ""
	}
	return tag
}

// suggest offers the known key closest to a mistyped one.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return "; known keys: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = slices.Min([]int{prev[j] + 1, cur[j-1] + 1, prev[j-1] + cost})
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
