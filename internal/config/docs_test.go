package config

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinhole-net/pinhole/internal/catalog"
)

// configDoc is the config reference that must not drift from the code.
const configDoc = "../../docs/config.md"

// docKey is one key of the raw config: its path as the reference writes it
// ("dns.ttl_floor", "apps[].name") and whether its value is a list.
type docKey struct {
	path string
	list bool
}

// rawKeys lists every leaf key of a raw config struct, by reflection over
// the yaml tags, so that a key added to the code cannot be left out.
func rawKeys(t reflect.Type, prefix string) []docKey {
	var keys []docKey
	for f := range t.Fields() {
		name := yamlKey(f)
		if name == "" {
			continue
		}
		path := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == scalarType:
			keys = append(keys, docKey{path: path})
		case ft.Kind() == reflect.Slice && ft.Elem() == scalarType:
			keys = append(keys, docKey{path: path, list: true})
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, rawKeys(ft.Elem(), path+"[].")...)
		case ft.Kind() == reflect.Struct:
			keys = append(keys, rawKeys(ft, path+".")...)
		default:
			panic(fmt.Sprintf("config key %s has a type (%s) this test does not know", path, ft))
		}
	}
	return keys
}

// docRow is one key's row in the reference's tables.
type docRow struct {
	line     int
	typ, def string
}

// parseConfigDoc reads the rows of the reference's tables whose first cell
// is one key in backticks: | `key` | type | default | meaning |.
func parseConfigDoc(doc string) (map[string]docRow, []string) {
	rows := map[string]docRow{}
	var problems []string
	for i, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		key := strings.Trim(cells[0], "`")
		if len(cells) != 4 || strings.Contains(key, "`") {
			problems = append(problems, fmt.Sprintf("docs/config.md:%d: a key row needs 4 cells (key, type, default, meaning) and one key", i+1))
			continue
		}
		if prev, dup := rows[key]; dup {
			problems = append(problems, fmt.Sprintf("docs/config.md:%d: %s documented twice (first on line %d)", i+1, key, prev.line))
			continue
		}
		rows[key] = docRow{line: i + 1, typ: cells[1], def: cells[2]}
	}
	return rows, problems
}

// Expected defaults that are not values.
type (
	// noDefault: the key has no default; the code's value must be zero and
	// the reference's default cell must start with "none".
	noDefault struct{ code any }
	// required: the reference's default cell must start with "required".
	required struct{}
)

// wantDefaults gives every key's default as the code has it, taken from
// Default() and the catalog, so that changing a default in the code without
// the reference fails the test.
func wantDefaults(t *testing.T) map[string]any {
	def := Default()
	param := func(profile, name string) string {
		ps, err := catalog.Params(profile)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Name == name {
				return p.Default
			}
		}
		t.Fatalf("catalog profile %s has no parameter %s", profile, name)
		return ""
	}
	return map[string]any{
		"profile.name":             def.Profile.Name,
		"profile.hub":              noDefault{def.Profile.Params["hub"]},
		"profile.ntp_servers":      param("minimal", "ntp_servers"),
		"profile.connectivity_url": param("minimal", "connectivity_url"),

		"mode":        string(def.Mode),
		"unmanaged":   string(def.Unmanaged),
		"system_mark": def.SystemMark,

		"firewall.nflog_group": def.Firewall.NFLOGGroup,
		"firewall.log_rate":    def.Firewall.LogRate,
		"firewall.log_burst":   def.Firewall.LogBurst,

		"dns.upstreams":              noDefault{def.DNS.Upstreams},
		"dns.resolv_conf":            def.DNS.ResolvConf,
		"dns.stub_port_base":         def.DNS.StubPortBase,
		"dns.ttl_floor":              def.DNS.TTLFloor,
		"dns.ttl_ceiling":            def.DNS.TTLCeiling,
		"dns.grace":                  def.DNS.Grace,
		"dns.max_addresses_per_app":  def.DNS.MaxAddressesPerApp,
		"dns.max_addresses_per_name": def.DNS.MaxAddressesPerName,
		"dns.insert_timeout":         def.DNS.InsertTimeout,
		"dns.query_timeout":          def.DNS.QueryTimeout,
		"dns.allow_private":          noDefault{def.DNS.AllowPrivate},
		"dns.rate_limit":             def.DNS.RateLimit,
		"dns.burst":                  def.DNS.Burst,
		"dns.max_in_flight":          def.DNS.MaxInFlight,

		"time.enabled":  def.Time.Enabled,
		"time.source":   string(def.Time.Source),
		"time.servers":  noDefault{def.Time.Servers},
		"time.fallback": def.Time.Fallback,

		"proxy.enabled":        def.Proxy.Enabled,
		"proxy.address":        noDefault{def.Proxy.Address},
		"proxy.port":           noDefault{def.Proxy.Port},
		"proxy.authentication": string(def.Proxy.Auth),
		"proxy.username":       noDefault{def.Proxy.Username},
		"proxy.password":       noDefault{def.Proxy.Password},
		"proxy.password_file":  noDefault{def.Proxy.PasswordFile},
		"proxy.no_proxy":       noDefault{def.Proxy.NoProxy},

		"service_link.enabled":   def.ServiceLink.Enabled,
		"service_link.serial":    noDefault{def.ServiceLink.Serial},
		"service_link.baud":      def.ServiceLink.Baud,
		"service_link.interface": def.ServiceLink.Interface,
		"service_link.address":   def.ServiceLink.Address,
		"service_link.api_port":  def.ServiceLink.APIPort,

		"api.socket":         def.API.Socket,
		"api.group":          def.API.Group,
		"api.metrics_listen": noDefault{def.API.MetricsListen},

		"state_dir":  def.StateDir,
		"log.level":  strings.ToLower(def.Log.Level.String()),
		"log.format": string(def.Log.Format),

		"apps[].name":     required{},
		"apps[].manifest": required{},
		"apps[].uid":      noDefault{},
		"apps[].user":     noDefault{},
		"apps[].cgroup":   noDefault{},
	}
}

// firstCode returns the text of the first `code span` in s.
func firstCode(s string) (string, bool) {
	_, rest, ok := strings.Cut(s, "`")
	if !ok {
		return "", false
	}
	code, _, ok := strings.Cut(rest, "`")
	return code, ok
}

// checkDefault compares a row's default cell with the code's default: the
// first code span of the cell is the default, read as the code's type.
func checkDefault(cell string, want any) error {
	lower := strings.ToLower(cell)
	switch w := want.(type) {
	case noDefault:
		if w.code != nil && !reflect.ValueOf(w.code).IsZero() {
			return fmt.Errorf("the code has a default (%v); the test's table says none", w.code)
		}
		if !strings.HasPrefix(lower, "none") {
			return fmt.Errorf("default %q should start with \"none\": the code has no default", cell)
		}
		return nil
	case required:
		if !strings.HasPrefix(lower, "required") {
			return fmt.Errorf("default %q should start with \"required\"", cell)
		}
		return nil
	}
	got, ok := firstCode(cell)
	if !ok {
		return fmt.Errorf("default %q has no `value`; the code's default is %v", cell, want)
	}
	var same bool
	var err error
	switch w := want.(type) {
	case string:
		same = got == w
	case bool:
		var b bool
		b, err = strconv.ParseBool(got)
		same = b == w
	case time.Duration:
		var d time.Duration
		d, err = time.ParseDuration(got)
		same = d == w
	case float64:
		var f float64
		f, err = strconv.ParseFloat(got, 64)
		same = f == w
	case int, uint16, uint32:
		var n uint64
		n, err = strconv.ParseUint(got, 0, 64)
		same = fmt.Sprint(n) == fmt.Sprint(w)
	case netip.Addr:
		var a netip.Addr
		a, err = netip.ParseAddr(got)
		same = a == w
	default:
		return fmt.Errorf("the test cannot compare a default of type %T", want)
	}
	if err != nil {
		return fmt.Errorf("default `%s` does not read as the code's type: %v", got, err)
	}
	if !same {
		return fmt.Errorf("default `%s` differs from the code's default %v", got, want)
	}
	return nil
}

// checkConfigDoc returns every way the reference differs from the code.
func checkConfigDoc(t *testing.T, doc string) []string {
	rows, problems := parseConfigDoc(doc)
	want := wantDefaults(t)
	keys := rawKeys(reflect.TypeFor[rawConfig](), "")
	known := map[string]bool{}
	for _, k := range keys {
		known[k.path] = true
		w, ok := want[k.path]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: a config key without an expected default in docs_test.go: add it there and to docs/config.md", k.path))
			continue
		}
		row, ok := rows[k.path]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: not documented in docs/config.md (add a row | `%s` | type | default | meaning |)", k.path, k.path))
			continue
		}
		if isList := strings.HasPrefix(row.typ, "list"); isList != k.list {
			problems = append(problems, fmt.Sprintf("docs/config.md:%d: %s: type %q, but the key %s a list", row.line, k.path, row.typ, map[bool]string{true: "is", false: "is not"}[k.list]))
		}
		if err := checkDefault(row.def, w); err != nil {
			problems = append(problems, fmt.Sprintf("docs/config.md:%d: %s: %v", row.line, k.path, err))
		}
	}
	for key, row := range rows {
		if !known[key] {
			problems = append(problems, fmt.Sprintf("docs/config.md:%d: documents %s, which the config does not have", row.line, key))
		}
	}
	for key := range want {
		if !known[key] {
			problems = append(problems, fmt.Sprintf("docs_test.go: expects a default for %s, which the config does not have", key))
		}
	}
	slices.Sort(problems)
	return problems
}

// TestConfigDoc checks that docs/config.md documents every key of the
// config, and no other, with the defaults the code uses.
func TestConfigDoc(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkConfigDoc(t, string(doc)) {
		t.Error(p)
	}
	if rows, _ := parseConfigDoc(string(doc)); len(rows) < 50 {
		t.Errorf("found only %d key rows in %s; the table format changed?", len(rows), configDoc)
	}
}

// TestConfigDocCatchesDrift checks that the doc check fails when the
// reference loses a key, gets a default wrong, or names a key the config
// does not have.
func TestConfigDocCatchesDrift(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	lineOf := func(key string) string {
		for l := range strings.SplitSeq(doc, "\n") {
			if strings.HasPrefix(l, "| `"+key+"` |") {
				return l
			}
		}
		t.Fatalf("no row for %s", key)
		return ""
	}
	tests := []struct {
		name string
		edit func(string) string
		want []string // substrings, one per expected problem
	}{
		{
			name: "row removed",
			edit: func(d string) string { return strings.Replace(d, lineOf("dns.grace")+"\n", "", 1) },
			want: []string{"dns.grace: not documented"},
		},
		{
			name: "nested list key removed",
			edit: func(d string) string { return strings.Replace(d, lineOf("apps[].cgroup")+"\n", "", 1) },
			want: []string{"apps[].cgroup: not documented"},
		},
		{
			name: "duration default wrong",
			edit: func(d string) string {
				l := lineOf("dns.ttl_floor")
				return strings.Replace(d, l, strings.Replace(l, "`30s`", "`20s`", 1), 1)
			},
			want: []string{"dns.ttl_floor: default `20s` differs from the code's default 30s"},
		},
		{
			name: "hex default wrong",
			edit: func(d string) string {
				l := lineOf("system_mark")
				return strings.Replace(d, l, strings.Replace(l, "`0x70680000`", "`0x70680001`", 1), 1)
			},
			want: []string{"system_mark: default `0x70680001` differs"},
		},
		{
			name: "default where the code has none",
			edit: func(d string) string {
				l := lineOf("proxy.port")
				return strings.Replace(d, l, strings.Replace(l, "none (required with `address`)", "`3128`", 1), 1)
			},
			want: []string{"proxy.port: default \"`3128`\" should start with \"none\""},
		},
		{
			name: "unknown key documented",
			edit: func(d string) string {
				return strings.Replace(d, lineOf("dns.grace"), lineOf("dns.grace")+"\n| `dns.gracefully` | duration | `1s` | nothing |", 1)
			},
			want: []string{"documents dns.gracefully, which the config does not have"},
		},
		{
			name: "list type lost",
			edit: func(d string) string {
				l := lineOf("dns.upstreams")
				return strings.Replace(d, l, strings.Replace(l, "list of `IP`", "`IP`", 1), 1)
			},
			want: []string{"dns.upstreams: type"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			problems := checkConfigDoc(t, tt.edit(doc))
			var got []string
			for _, w := range tt.want {
				for _, p := range problems {
					if strings.Contains(p, w) {
						got = append(got, w)
						break
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" || len(problems) != len(tt.want) {
				t.Errorf("problems = %q\nwant one problem each containing %q (-want +found):\n%s", problems, tt.want, diff)
			}
		})
	}
}
