package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/cgroup"
	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// ErrNotRoot says the lab needs root.
var ErrNotRoot = errors.New("pinhole lab needs root: it creates network namespaces, a veth pair and cgroups (run it with sudo)")

// ExistsError says a lab (or what is left of one) is in the way.
type ExistsError struct {
	Name  string
	Found []string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("a lab named %q is already up or half-built (found %s): see pinhole lab status, or remove it with pinhole lab down",
		e.Name, strings.Join(e.Found, ", "))
}

// Options say how to build a lab.
type Options struct {
	Layout Layout
	// Config is a pinholed config of the user's own; "" runs the sample
	// config with the sample apps.
	Config string
	// Pinholed is the pinholed binary.
	Pinholed string
	// Helper is the command line that runs one of the lab's helper roles
	// (RunHelper) when the role and its arguments are appended, such as
	// ["/usr/bin/pinhole", "lab", "_helper"].
	Helper []string
	Log    *slog.Logger
	// Progress, if not nil, gets one line per step for the user.
	Progress io.Writer
}

// readyTimeout bounds how long up waits for every service to answer.
const readyTimeout = 60 * time.Second

// Up builds the lab: state directory, configs, certificates, cgroups,
// namespaces and network, then starts the supervisor and waits until every
// service answers. On failure it removes what it built.
func Up(ctx context.Context, o Options) (p *Plan, err error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	l := o.Layout
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if len(o.Helper) == 0 {
		return nil, errors.New("lab: no helper command")
	}
	req, opt := Missing(Tools(), FindTool)
	if len(req) > 0 {
		return nil, &MissingError{Tools: req}
	}
	if len(opt) > 0 && o.Progress != nil {
		var names []string
		for _, t := range opt {
			names = append(names, t.Binary)
		}
		fmt.Fprintf(o.Progress, "note: %s, for trying things by hand in lab shell, are not installed: %s\n", strings.Join(names, ", "), AptLine(opt))
	}
	if o.Pinholed, err = checkExecutable(o.Pinholed); err != nil {
		return nil, fmt.Errorf("pinholed: %w", err)
	}
	o.Helper = append([]string{}, o.Helper...)
	if o.Helper[0], err = checkExecutable(o.Helper[0]); err != nil {
		return nil, fmt.Errorf("lab helper: %w", err)
	}
	if o.Config != "" {
		// Report a bad file before building anything.
		if _, _, _, err := LoadSource(o.Config); err != nil {
			return nil, err
		}
		if o.Config, err = filepath.Abs(o.Config); err != nil {
			return nil, err
		}
	}
	if found := Leftovers(l); len(found) > 0 {
		return nil, &ExistsError{Name: l.Name, Found: found}
	}
	dir := l.Dir()
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, &ExistsError{Name: l.Name, Found: []string{dir}}
		}
		return nil, fmt.Errorf("create the lab's state directory: %w", err)
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	defer unlock()
	defer func() {
		if err != nil {
			if _, derr := teardown(l, o.Log); derr != nil {
				err = errors.Join(err, fmt.Errorf("and removing the half-built lab: %w", derr))
			}
		}
	}()
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}

	p, err = prepare(o, progress)
	if err != nil {
		return nil, err
	}
	if err := createCgroups(p); err != nil {
		return nil, err
	}
	progress("network: namespaces %s and %s joined by a veth pair", p.DeviceNetns, p.InternetNetns)
	if err := createNetwork(p); err != nil {
		return nil, fmt.Errorf("create the lab's network: %w", err)
	}
	progress("starting services: %s", strings.Join(serviceNames(p), ", "))
	if err := startSupervisor(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

func serviceNames(p *Plan) []string {
	out := make([]string, len(p.Services))
	for i, s := range p.Services {
		out[i] = s.Name
	}
	return out
}

func checkExecutable(path string) (string, error) {
	if path == "" {
		return "", errors.New("no binary given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", abs)
	}
	return abs, nil
}

// prepare writes every file of the lab into its state directory and
// returns the plan.
func prepare(o Options, progress func(string, ...any)) (*Plan, error) {
	l := o.Layout
	dir := l.Dir()
	for _, d := range []string{"logs", "pinholed", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// Copies of the binaries: the apps' UIDs can run them wherever the
	// originals are (go test and go run build into private directories),
	// and a rebuild does not change a running lab.
	helper, err := installBinary(o.Helper[0], dir)
	if err != nil {
		return nil, err
	}
	pinholed, err := installBinary(o.Pinholed, dir)
	if err != nil {
		return nil, err
	}
	src := o.Config
	if src == "" {
		if src, err = copySamples(dir); err != nil {
			return nil, err
		}
	}
	cfg, pol, data, err := LoadSource(src)
	if err != nil {
		return nil, err
	}
	uids := allocUIDs(len(cfg.Apps), uidTaken)
	devYAML, apps, err := DeviceConfig(data, cfg, l, uids)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Name:          l.Name,
		Dir:           dir,
		Created:       time.Now().UTC().Truncate(time.Second),
		Source:        o.Config,
		Config:        filepath.Join(dir, "device.yaml"),
		Pinholed:      pinholed,
		Helper:        append([]string{helper}, o.Helper[1:]...),
		APISocket:     filepath.Join(dir, "api.sock"),
		DeviceNetns:   l.DeviceNetns(),
		InternetNetns: l.InternetNetns(),
		CACert:        filepath.Join(dir, "ca.crt"),
		ServerCert:    filepath.Join(dir, "server.crt"),
		ServerKey:     filepath.Join(dir, "server.key"),
		Apps:          apps,
	}
	if err := os.WriteFile(p.Config, devYAML, 0o644); err != nil {
		return nil, err
	}
	devCfg, err := config.Load(p.Config)
	if err != nil {
		return nil, fmt.Errorf("the lab's device config %s is invalid: %w", p.Config, err)
	}
	if _, _, err := policy.Load(devCfg); err != nil {
		return nil, fmt.Errorf("the lab's device config %s does not compile: %w", p.Config, err)
	}
	prof, err := cfg.Profile.Load()
	if err != nil {
		return nil, err
	}
	if p.Zone, err = BuildZone(prof, appPatterns(pol)); err != nil {
		return nil, err
	}
	from := "the sample config (examples/pinhole.yaml)"
	if o.Config != "" {
		from = o.Config
	}
	progress("device: pinholed with %s, apps %s", from, strings.Join(p.AppNames(), ", "))
	progress("internet: %d host names, certificates from a new lab CA (%s)", len(p.Zone), p.CACert)

	ca, err := NewCA(l.Name, time.Now())
	if err != nil {
		return nil, err
	}
	addrs := []netip.Addr{ResolverV4, ResolverV6, LANServer}
	for _, h := range p.Zone {
		addrs = append(addrs, h.V4, h.V6)
	}
	certPEM, keyPEM, err := ca.Issue(ZoneNames(p.Zone), addrs, time.Now())
	if err != nil {
		return nil, err
	}
	// The certificates first: modules may adjust who can read the key.
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{p.CACert, ca.CertPEM(), 0o644},
		{p.ServerCert, certPEM, 0o644},
		{p.ServerKey, keyPEM, 0o600},
	} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	files := map[string][]byte{"bashrc": []byte(bashrc)}
	for _, m := range modules {
		svc, err := m.service(p, files)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", m.name(), err)
		}
		p.Services = append(p.Services, svc)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	if err := p.save(); err != nil {
		return nil, fmt.Errorf("write the lab plan: %w", err)
	}
	return p, nil
}

func createCgroups(p *Plan) error {
	l := p.Layout()
	rels := []string{l.ServicesCgroup(), l.ShellCgroup()}
	for _, a := range p.Apps {
		rels = append(rels, a.Cgroup)
	}
	for _, rel := range rels {
		if err := cgroup.Create(rel); err != nil {
			return err
		}
	}
	return nil
}

// lockDir takes an exclusive lock on the state directory, so that up, down
// and the supervisor's start never run at once for one lab.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: another pinhole lab command holds it: %w", dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startSupervisor runs the supervisor in the lab's services cgroup, in a
// session of its own so that it outlives this command, and waits until it
// reports every service up.
func startSupervisor(ctx context.Context, p *Plan) error {
	l := p.Layout()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	logPath := filepath.Join(p.Dir, "logs", "supervisor.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.Close()
		return err
	}
	cg, err := cgroup.OpenDir(l.ServicesCgroup())
	if err != nil {
		w.Close()
		logf.Close()
		return err
	}
	cmd := exec.Command(p.Helper[0], append(append([]string{}, p.Helper[1:]...), "supervise", "--dir", p.Dir)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	err = cmd.Start()
	w.Close()
	logf.Close()
	cg.Close()
	if err != nil {
		return fmt.Errorf("start the lab's supervisor: %w", err)
	}
	// Reap it when it ends while this process still runs (the demo).
	go cmd.Wait()

	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- answer{strings.TrimSpace(line), err}
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("the lab's services did not start within %v: see %s", readyTimeout, filepath.Join(p.Dir, "logs"))
	case a := <-ch:
		switch {
		case a.line == "ready":
			return nil
		case strings.HasPrefix(a.line, "error: "):
			return fmt.Errorf("start the lab's services: %s", strings.TrimPrefix(a.line, "error: "))
		}
		return fmt.Errorf("the lab's supervisor exited before its services were up:\n%s", tail(logPath, 20))
	}
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// installBinary copies the executable src into dir/bin.
func installBinary(src, dir string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("copy %s into the lab: %w", src, err)
	}
	dst := filepath.Join(dir, "bin", filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return "", fmt.Errorf("copy %s into the lab: %w", src, err)
	}
	return dst, nil
}

// bashrc is the rc file of lab shell: the system's, then a prompt that says
// where the shell is and as whom.
const bashrc = `# The rc file of pinhole lab shell.
[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
[ -n "$PINHOLE_LAB_PS1" ] && PS1="$PINHOLE_LAB_PS1"
`
