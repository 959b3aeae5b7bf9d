package lab

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/netns"
	"github.com/pinhole-net/pinhole/internal/wait"
)

// networkScript is the lab's network as ip(8) batch lines per namespace.
// The veth pair is created inside the device namespace with its peer
// directly in the internet namespace: nothing ever appears in the machine's
// own namespace.
func networkScript(p *Plan) (device, internet []string) {
	internet = []string{
		"link set lo up",
		"addr add " + ResolverV4.String() + "/32 dev lo",
		"addr add " + ResolverV6.String() + "/128 dev lo nodad",
		"addr add " + LANServer.String() + "/32 dev lo",
	}
	for _, h := range p.Zone {
		internet = append(internet,
			"addr add "+h.V4.String()+"/32 dev lo",
			"addr add "+h.V6.String()+"/128 dev lo nodad")
	}
	device = []string{
		"link set lo up",
		"link add " + deviceIface + " type veth peer name " + routerIface + " netns " + p.InternetNetns,
		"addr add " + DeviceLANv4.String() + " dev " + deviceIface,
		"addr add " + DeviceLANv6.String() + " dev " + deviceIface + " nodad",
		"link set " + deviceIface + " up",
		"route add default via " + RouterLANv4.Addr().String() + " dev " + deviceIface,
		"route add ::/0 via " + RouterLANv6.Addr().String() + " dev " + deviceIface,
	}
	internet = append(internet,
		"addr add "+RouterLANv4.String()+" dev "+routerIface,
		"addr add "+RouterLANv6.String()+" dev "+routerIface+" nodad",
		"link set "+routerIface+" up",
	)
	return device, internet
}

// createNetwork makes both namespaces and the veth pair between them.
func createNetwork(p *Plan) error {
	if err := ipBatch("", []string{"netns add " + p.InternetNetns, "netns add " + p.DeviceNetns}); err != nil {
		return err
	}
	// Before any interface exists: no duplicate address detection, whose
	// tentative link-local addresses delay the first IPv6 packets by a
	// second. New namespaces do not forward; say so anyway, the internet
	// side must stay a dead end. Apps in the device may ping.
	noDAD := map[string]string{"ipv6/conf/default/accept_dad": "0", "ipv6/conf/all/accept_dad": "0"}
	sysctls := map[string]map[string]string{
		p.InternetNetns: {"ipv4/ip_forward": "0", "ipv6/conf/all/forwarding": "0"},
		p.DeviceNetns:   {"ipv4/ping_group_range": "0 2147483647"},
	}
	for ns, kv := range sysctls {
		maps.Copy(kv, noDAD)
		if err := netns.Do(NetnsPath(ns), func() error { return writeSysctls(kv) }); err != nil {
			return err
		}
	}
	device, internet := networkScript(p)
	if err := ipBatch(p.DeviceNetns, device); err != nil {
		return err
	}
	if err := ipBatch(p.InternetNetns, internet); err != nil {
		return err
	}
	// IPv6 on a link starts only once the kernel has seen its carrier,
	// which it may report up to a second late; until then neighbour
	// solicitations go unanswered. Wait for both ends.
	for _, end := range [][2]string{{p.DeviceNetns, deviceIface}, {p.InternetNetns, routerIface}} {
		if err := waitIPv6(end[0], end[1], 5*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// waitIPv6 waits until iface in namespace ns has a usable link-local
// address: the sign that IPv6 runs on it.
func waitIPv6(ns, iface string, timeout time.Duration) error {
	ip, err := FindTool("ip")
	if err != nil {
		return err
	}
	var out []byte
	ok := wait.Until(timeout, func() bool {
		out, err = exec.Command(ip, "-n", ns, "-6", "-o", "addr", "show", "dev", iface, "scope", "link").CombinedOutput()
		return err == nil && strings.Contains(string(out), "inet6 fe80") && !strings.Contains(string(out), "tentative")
	})
	if !ok {
		return fmt.Errorf("IPv6 did not start on %s in namespace %s within %v: %s", iface, ns, timeout, strings.TrimSpace(string(out)))
	}
	return nil
}

func writeSysctls(kv map[string]string) error {
	for k, v := range kv {
		if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0); err != nil {
			return fmt.Errorf("sysctl net/%s: %w", k, err)
		}
	}
	return nil
}

// ipBatch runs ip -batch with lines, in namespace ns if not "".
func ipBatch(ns string, lines []string) error {
	ip, err := FindTool("ip")
	if err != nil {
		return err
	}
	args := []string{"-b", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command(ip, args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netnsExists reports whether the named namespace exists.
func netnsExists(name string) bool {
	_, err := os.Stat(NetnsPath(name))
	return err == nil
}

// deleteNetns removes a named namespace; its veth ends go with it.
func deleteNetns(name string) error {
	if !netnsExists(name) {
		return nil
	}
	return ipBatch("", []string{"netns del " + name})
}

// DialIn connects from inside the named namespace; the connection keeps
// that namespace whichever thread uses it later.
func DialIn(ctx context.Context, netnsName, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(NetnsPath(netnsName), func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}

// netnsPids lists the processes in the named namespace; none when it does
// not exist.
func netnsPids(name string) ([]int, error) {
	id, err := netns.OfPath(NetnsPath(name))
	if err != nil {
		return nil, nil
	}
	return netns.Pids(id)
}

// killNetns SIGKILLs every process in the named namespace until none is
// left or timeout passes.
func killNetns(name string, timeout time.Duration) error {
	var pids []int
	ok := wait.Until(timeout, func() bool {
		var err error
		pids, err = netnsPids(name)
		if err != nil || len(pids) == 0 {
			return true
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		return false
	})
	if !ok {
		return fmt.Errorf("processes %v in namespace %s survive SIGKILL", pids, name)
	}
	return nil
}
