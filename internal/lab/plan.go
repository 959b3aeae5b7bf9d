package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pinhole-net/pinhole/examples"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/hostname"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Plan is a lab as built: names, addresses, apps and services. Up writes it
// to plan.json in the state directory; the other commands read it.
type Plan struct {
	Name    string    `json:"name"`
	Dir     string    `json:"dir"`
	Created time.Time `json:"created"`
	// Source is the user's config file, or "" for the sample config.
	Source string `json:"source"`
	// Config is pinholed's config in the lab (written from Source).
	Config    string   `json:"config"`
	Pinholed  string   `json:"pinholed"`
	Helper    []string `json:"helper"`
	APISocket string   `json:"api_socket"`

	DeviceNetns   string `json:"device_netns"`
	InternetNetns string `json:"internet_netns"`

	CACert     string `json:"ca_cert"`
	ServerCert string `json:"server_cert"`
	ServerKey  string `json:"server_key"`

	Apps     []App     `json:"apps"`
	Zone     []Host    `json:"zone"`
	Services []Service `json:"services"`
}

// Layout returns the plan's layout.
func (p *Plan) Layout() Layout { return Layout{Name: p.Name} }

// App returns the app with that name.
func (p *Plan) App(name string) (App, bool) {
	for _, a := range p.Apps {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}

// AppNames lists the apps' names.
func (p *Plan) AppNames() []string {
	out := make([]string, len(p.Apps))
	for i, a := range p.Apps {
		out[i] = a.Name
	}
	return out
}

const planFile = "plan.json"

// NoLabError says no lab of that name is up; it matches fs.ErrNotExist.
type NoLabError struct{ Name string }

func (e *NoLabError) Error() string {
	return fmt.Sprintf("no lab %q is up: start one with pinhole lab up", e.Name)
}

func (e *NoLabError) Unwrap() error { return fs.ErrNotExist }

// LoadPlan reads the plan of the lab l. An error wrapping fs.ErrNotExist
// means no lab is up.
func LoadPlan(l Layout) (*Plan, error) {
	data, err := os.ReadFile(filepath.Join(l.Dir(), planFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NoLabError{Name: l.Name}
	}
	if err != nil {
		return nil, fmt.Errorf("read lab plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("read lab plan %s: %w", filepath.Join(l.Dir(), planFile), err)
	}
	return &p, nil
}

func (p *Plan) save() error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.Dir, planFile), append(data, '\n'), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// copySamples writes the sample config and manifests into dir/examples and
// returns the config's path.
func copySamples(dir string) (string, error) {
	dst := filepath.Join(dir, "examples")
	err := fs.WalkDir(examples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := examples.FS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("write the sample config: %w", err)
	}
	return filepath.Join(dst, "pinhole.yaml"), nil
}

// LoadSource loads a config and compiles its policy, so that a bad file or
// manifest is reported before the lab builds anything. UID and user
// identities need not exist here: the lab replaces them.
func LoadSource(path string) (*config.Config, *policy.Policy, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, nil, err
	}
	pol, err := compileForLab(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, pol, data, nil
}

// compileForLab compiles cfg as the lab will run it: upstreams and
// identities do not matter for what the apps may reach.
func compileForLab(cfg *config.Config) (*policy.Policy, error) {
	c := *cfg
	c.DNS.Upstreams = []netip.AddrPort{netip.AddrPortFrom(ResolverV4, resolverPort)}
	c.Time.Enabled = false
	c.ServiceLink.Enabled = false
	c.Proxy.Enabled = false
	c.Apps = make([]config.App, len(cfg.Apps))
	for i, a := range cfg.Apps {
		if a.Identity.Kind == config.IdentityUser {
			a.Identity = config.Identity{Kind: config.IdentityUID, UID: uint32(FirstAppUID + i)}
		}
		c.Apps[i] = a
	}
	ms, _, err := policy.LoadManifests(&c)
	if err != nil {
		return nil, err
	}
	return policy.Compile(&c, ms)
}

// appPatterns lists every host pattern of the apps' manifests.
func appPatterns(pol *policy.Policy) []hostname.Pattern {
	var out []hostname.Pattern
	for _, a := range pol.Apps {
		for _, h := range a.Hosts {
			out = append(out, h.Pattern)
		}
	}
	return out
}

// allocUIDs gives n apps UIDs from FirstAppUID up, skipping any that has a
// passwd entry (the lab's apps must be nobody else).
func allocUIDs(n int, taken func(uint32) bool) []uint32 {
	out := make([]uint32, 0, n)
	for uid := uint32(FirstAppUID); len(out) < n; uid++ {
		if !taken(uid) {
			out = append(out, uid)
		}
	}
	return out
}

func uidTaken(uid uint32) bool {
	_, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	return err == nil
}
