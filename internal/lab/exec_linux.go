package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/pinhole-net/pinhole/internal/cgroup"
)

// Command returns a command that runs argv in the lab's device namespace:
// as app (inside its cgroup, with its UID and GID, no supplementary groups)
// or, with app "", as root in the lab's shell cgroup, a process that belongs
// to no app. Call release once the command has started (or failed to).
func (p *Plan) Command(app string, argv []string) (cmd *exec.Cmd, release func(), err error) {
	if len(argv) == 0 {
		return nil, nil, fmt.Errorf("no command to run")
	}
	nsenter, err := FindTool("nsenter")
	if err != nil {
		return nil, nil, err
	}
	rel := p.Layout().ShellCgroup()
	args := []string{"--net=" + NetnsPath(p.DeviceNetns)}
	if app != "" {
		a, ok := p.App(app)
		if !ok {
			return nil, nil, fmt.Errorf("the lab has no app %q (its apps: %s)", app, strings.Join(p.AppNames(), ", "))
		}
		rel = a.Cgroup
		id := strconv.FormatUint(uint64(a.UID), 10)
		args = append(args, "--setgid", id, "--setuid", id)
	}
	args = append(append(args, "--"), argv...)
	dir, err := cgroup.OpenDir(rel)
	if err != nil {
		return nil, nil, err
	}
	cmd = exec.Command(nsenter, args...)
	cmd.Env = p.env(app)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	return cmd, func() { dir.Close() }, nil
}

// env is the environment of commands in the device: a plain PATH, the
// terminal, and the lab's CA for curl and OpenSSL-based clients.
func (p *Plan) env(app string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"CURL_CA_BUNDLE=" + p.CACert,
		"SSL_CERT_FILE=" + p.CACert,
		"PINHOLE_LAB=" + p.Name,
		"PINHOLE_LAB_APP=" + app,
		"PINHOLE_SOCKET=" + p.APISocket,
	}
	home := "/root"
	if app != "" {
		home = "/"
	}
	env = append(env, "HOME="+home)
	for _, k := range []string{"TERM", "LANG", "LC_ALL", "COLORTERM"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
