package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/pinhole-net/pinhole/internal/config"
)

// App is an app of the lab's device and the identity the lab gave it.
type App struct {
	Name string `json:"name"`
	// Kind is how pinholed recognises the app's processes: "uid" or
	// "cgroup", as in the source config.
	Kind string `json:"kind"`
	// UID is the user the app's processes run as; for a uid app it is its
	// identity, a cgroup app runs as it so that it is never root.
	UID uint32 `json:"uid"`
	// Cgroup is where the app's processes live; for a cgroup app it is its
	// identity.
	Cgroup   string `json:"cgroup"`
	Manifest string `json:"manifest"`
}

// Identity describes the app's identity in words.
func (a App) Identity() string {
	if a.Kind == "cgroup" {
		return fmt.Sprintf("cgroup %s, running as uid %d", a.Cgroup, a.UID)
	}
	return fmt.Sprintf("uid %d", a.UID)
}

// DeviceConfigChanges lists what DeviceConfig changes in a config, for the
// generated file's header and the user.
var DeviceConfigChanges = []string{
	"dns.upstreams: the lab's DNS server (resolv_conf is not used)",
	"state_dir, api.socket: in the lab's state directory; api.group: root only",
	"time.enabled: false (the clock is not namespaced: the lab must never set the machine's clock)",
	"service_link.enabled, proxy.enabled: false (the lab has no serial line and no proxy yet)",
	"apps: manifests by absolute path; identities made by the lab (a UID without passwd entry for uid and user apps, a cgroup below the lab's for cgroup apps)",
}

// DeviceConfig rewrites a pinholed config (src, already loaded as cfg) for
// the lab's device: see DeviceConfigChanges. uids gives each app, in config
// order, the UID it runs as. Everything else, comments included, stays as
// the user wrote it.
func DeviceConfig(src []byte, cfg *config.Config, l Layout, uids []uint32) ([]byte, []App, error) {
	if len(uids) != len(cfg.Apps) {
		return nil, nil, fmt.Errorf("device config: %d UIDs for %d apps", len(uids), len(cfg.Apps))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, nil, fmt.Errorf("device config: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errors.New("device config: the file is not a YAML mapping")
	}
	root := doc.Content[0]
	dir := l.Dir()

	setScalar(root, "state_dir", "!!str", filepath.Join(dir, "pinholed"))
	api := child(root, "api")
	setScalar(api, "socket", "!!str", filepath.Join(dir, "api.sock"))
	setScalar(api, "group", "!!str", "")
	dns := child(root, "dns")
	deleteKey(dns, "resolv_conf")
	setNode(dns, "upstreams", &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{
		strNode(ResolverV4.String()),
		strNode(netip.AddrPortFrom(ResolverV6, resolverPort).String()),
	}})
	setScalar(child(root, "time"), "enabled", "!!bool", "false")
	setScalar(child(root, "service_link"), "enabled", "!!bool", "false")
	setScalar(child(root, "proxy"), "enabled", "!!bool", "false")

	apps := make([]App, len(cfg.Apps))
	seq := value(root, "apps")
	if len(cfg.Apps) > 0 && (seq == nil || seq.Kind != yaml.SequenceNode || len(seq.Content) != len(cfg.Apps)) {
		return nil, nil, errors.New("device config: the apps list does not match the loaded config")
	}
	for i, a := range cfg.Apps {
		item := seq.Content[i]
		if item.Kind != yaml.MappingNode {
			return nil, nil, fmt.Errorf("device config: apps[%d] is not a mapping", i)
		}
		la := App{Name: a.Name, UID: uids[i], Cgroup: l.AppCgroup(a.Name), Manifest: a.Manifest}
		for _, k := range []string{"uid", "user", "cgroup"} {
			deleteKey(item, k)
		}
		setScalar(item, "manifest", "!!str", a.Manifest)
		if a.Identity.Kind == config.IdentityCgroup {
			la.Kind = "cgroup"
			setScalar(item, "cgroup", "!!str", la.Cgroup)
		} else {
			la.Kind = "uid"
			setScalar(item, "uid", "!!int", strconv.FormatUint(uint64(la.UID), 10))
		}
		apps[i] = la
	}

	var out bytes.Buffer
	from := cfg.File
	if from == "" {
		from = "a config"
	}
	fmt.Fprintf(&out, "# pinholed's config in the lab %q, written by pinhole lab up from %s.\n", l.Name, from)
	out.WriteString("# The lab changed:\n")
	for _, c := range DeviceConfigChanges {
		fmt.Fprintf(&out, "#   %s\n", c)
	}
	out.WriteString("\n")
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, nil, fmt.Errorf("device config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, nil, fmt.Errorf("device config: %w", err)
	}
	return out.Bytes(), apps, nil
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// value returns the value node of key in mapping m, or nil.
func value(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// child returns the mapping under key, making it (or replacing an empty
// value) if needed.
func child(m *yaml.Node, key string) *yaml.Node {
	if v := value(m, key); v != nil && v.Kind == yaml.MappingNode {
		return v
	}
	c := &yaml.Node{Kind: yaml.MappingNode}
	setNode(m, key, c)
	return c
}

func setNode(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v.LineComment = m.Content[i+1].LineComment
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, strNode(key), v)
}

func setScalar(m *yaml.Node, key, tag, v string) {
	setNode(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v})
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
