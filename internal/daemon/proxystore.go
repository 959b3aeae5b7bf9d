package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/pinhole-net/pinhole/internal/api"
	"github.com/pinhole-net/pinhole/internal/config"
)

// proxyFile holds the proxy settings set through the API, so the last
// choice survives restarts and wins over the config file's.
const proxyFile = "proxy.json"

// proxyState is what proxyFile holds: settings, or Deleted when the API
// removed them (then the config's proxy stays off too).
type proxyState struct {
	Deleted  bool               `json:"deleted,omitempty"`
	Settings *api.ProxySettings `json:"settings,omitempty"`
}

// proxyStore keeps the proxy settings. Only settings are kept for now:
// pinholed does not yet send traffic through the proxy (a later part).
type proxyStore struct {
	dir string

	mu  sync.Mutex
	cur *api.ProxySettings
	// api is set once the settings come from the API (proxyFile), which
	// then wins over the config file.
	api bool
}

func (ps *proxyStore) fromAPI() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.api
}

// loadProxy reads the stored settings, or takes the config's when none were
// stored.
func loadProxy(dir string, cfg config.Proxy) (*proxyStore, error) {
	ps := &proxyStore{dir: dir}
	data, err := os.ReadFile(filepath.Join(dir, proxyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s, err := proxyFromConfig(cfg)
		ps.cur = s
		return ps, err
	case err != nil:
		return ps, fmt.Errorf("read proxy settings: %w", err)
	}
	var st proxyState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return ps, fmt.Errorf("read proxy settings %s: %w", filepath.Join(dir, proxyFile), err)
	}
	ps.cur, ps.api = st.Settings, true
	return ps, nil
}

// proxyFromConfig gives the config file's proxy as API settings; nil if it
// names none.
func proxyFromConfig(cfg config.Proxy) (*api.ProxySettings, error) {
	if cfg.Address.IsZero() {
		return nil, nil
	}
	s := &api.ProxySettings{Enabled: cfg.Enabled, Address: cfg.Address.String(), Port: cfg.Port,
		NoProxyAddresses: append([]string{}, cfg.NoProxy...), AuthenticationType: string(cfg.Auth)}
	if cfg.Auth == config.ProxyBasic {
		pw, err := cfg.ReadPassword()
		if err != nil {
			return nil, fmt.Errorf("proxy password: %w", err)
		}
		s.Username, s.Password = cfg.Username, pw
	}
	return s, nil
}

func (ps *proxyStore) get() (api.ProxySettings, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.cur == nil {
		return api.ProxySettings{}, false
	}
	return *ps.cur, true
}

func (ps *proxyStore) set(s *api.ProxySettings) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := proxyState{Settings: s, Deleted: s == nil}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(ps.dir, proxyFile), data, 0o600); err != nil {
		return fmt.Errorf("store proxy settings: %w", err)
	}
	ps.cur, ps.api = s, true
	return nil
}

// writeFileAtomic replaces path with data through a synced temporary file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
