package lab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-net/pinhole/internal/cgroup"
)

// Status is a lab's plan and how its parts are doing now.
type Status struct {
	Plan       *Plan            `json:"plan"`
	Supervisor *SupervisorState `json:"supervisor,omitempty"`
	// SupervisorAlive says whether the supervisor process still runs.
	SupervisorAlive bool `json:"supervisor_alive"`
	// Problems are what is wrong, in words; empty when all is well.
	Problems []string `json:"problems,omitempty"`
}

// ReadStatus looks at the lab l.
func ReadStatus(l Layout) (*Status, error) {
	p, err := LoadPlan(l)
	if err != nil {
		return nil, err
	}
	st := &Status{Plan: p}
	for _, ns := range []string{p.DeviceNetns, p.InternetNetns} {
		if !netnsExists(ns) {
			st.Problems = append(st.Problems, "namespace "+ns+" is missing")
		}
	}
	sup, err := readSupervisorState(p.Dir)
	if err != nil {
		st.Problems = append(st.Problems, "the supervisor has written no status: "+err.Error())
		return st, nil
	}
	st.Supervisor = sup
	st.SupervisorAlive = alive(sup.PID, l.ServicesCgroup())
	if !st.SupervisorAlive {
		st.Problems = append(st.Problems, fmt.Sprintf("the supervisor (pid %d) is gone: services are not restarted; pinhole lab down cleans up", sup.PID))
	}
	for i, s := range sup.Services {
		if s.State == "running" && !alive(s.PID, l.ServicesCgroup()) {
			sup.Services[i].State = "gone"
		}
		if sup.Services[i].State != "running" {
			st.Problems = append(st.Problems, fmt.Sprintf("service %s is %s (see %s/logs/%s.log)", s.Name, sup.Services[i].State, p.Dir, s.Name))
		}
	}
	return st, nil
}

// alive reports whether pid runs inside the cgroup rel.
func alive(pid int, rel string) bool {
	if pid <= 0 || unix.Kill(pid, 0) != nil {
		return false
	}
	got, err := cgroup.Of(pid)
	return err == nil && got == rel
}

// Print writes the status for people.
func (st *Status) Print(w io.Writer) {
	p := st.Plan
	state := "up"
	if len(st.Problems) > 0 {
		state = "up, with problems"
	}
	fmt.Fprintf(w, "lab %q: %s since %s (%s ago); state in %s\n", p.Name, state,
		p.Created.Local().Format("15:04:05"), time.Since(p.Created).Round(time.Second), p.Dir)
	src := "the sample config (examples/pinhole.yaml)"
	if p.Source != "" {
		src = p.Source
	}
	fmt.Fprintf(w, "  device    namespace %s: %s %s and %s, default route via %s and %s\n",
		p.DeviceNetns, deviceIface, DeviceLANv4, DeviceLANv6, RouterLANv4.Addr(), RouterLANv6.Addr())
	fmt.Fprintf(w, "            pinholed with %s (as %s)\n", src, p.Config)
	fmt.Fprintf(w, "  internet  namespace %s: %s %s and %s; DNS %s and %s; LAN server %s; %d host names\n",
		p.InternetNetns, routerIface, RouterLANv4, RouterLANv6, ResolverV4, ResolverV6, LANServer, len(p.Zone))
	fmt.Fprintf(w, "            TLS clients trust the lab CA with --cacert %s\n", p.CACert)

	fmt.Fprintln(w, "\nservices")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tWHERE\tSTATE\tPID\tRESTARTS\tOFFERS")
	states := map[string]ServiceState{}
	if st.Supervisor != nil {
		for _, s := range st.Supervisor.Services {
			states[s.Name] = s
		}
	}
	for _, s := range p.Services {
		ss, ok := states[s.Name]
		state, pid := "unknown", "-"
		if ok {
			state = ss.State
			if ss.PID > 0 {
				pid = fmt.Sprint(ss.PID)
			}
		}
		where := "internet"
		if s.Netns == p.DeviceNetns {
			where = "device"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", s.Name, where, state, pid, ss.Restarts, s.Offers)
	}
	tw.Flush()

	fmt.Fprintln(w, "\napps")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tIDENTITY\tMANIFEST")
	for _, a := range p.Apps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Name, a.Identity(), a.Manifest)
	}
	tw.Flush()

	if len(st.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems")
		for _, pr := range st.Problems {
			fmt.Fprintln(w, "  "+pr)
		}
	}
	fmt.Fprintln(w, "\ntry")
	app, host := "webfetch", "api.contoso.example"
	if _, ok := p.App(app); !ok && len(p.Apps) > 0 {
		app, host = p.Apps[0].Name, "HOST"
		for _, h := range p.Zone {
			if h.Note == noteManifest {
				host = h.Name
				break
			}
		}
	}
	for _, l := range []string{
		"pinhole lab shell --app " + app + "        a shell as " + app + " in the device (curl, dig, mosquitto_pub)",
		"pinhole lab exec --app " + app + " -- curl -sS https://" + host + "/",
		"pinhole status --socket " + p.APISocket,
		"pinhole audit --socket " + p.APISocket,
		"pinhole lab down                           remove the lab",
	} {
		fmt.Fprintln(w, "  "+strings.TrimRight(l, " "))
	}
}
