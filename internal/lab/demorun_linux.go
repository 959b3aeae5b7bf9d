package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-net/pinhole/internal/audit"
	"github.com/pinhole-net/pinhole/internal/logprefix"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// DemoRunner runs attempts inside a lab and prints what happened.
type DemoRunner struct {
	Plan   *Plan
	Policy *policy.Policy
	// Audit, if not nil, fetches pinholed's audit records of an identity
	// ("unmanaged" for processes of no app) seen since a time.
	Audit func(ctx context.Context, identity string, since time.Time) ([]audit.Record, error)
	Out   io.Writer
}

// auditWait bounds the wait for denial records to reach pinholed's audit
// log (NFLOG is asynchronous).
const auditWait = 5 * time.Second

// Run runs the attempts, app by app, printing each app's outcomes as soon
// as they are known. It returns every outcome; an error means an attempt
// could not be run at all.
func (d *DemoRunner) Run(ctx context.Context, attempts []Attempt) ([]Outcome, error) {
	var order []string
	groups := map[string][]Attempt{}
	for _, a := range attempts {
		if _, ok := groups[a.App]; !ok {
			order = append(order, a.App)
		}
		groups[a.App] = append(groups[a.App], a)
	}
	var all []Outcome
	for _, app := range order {
		outs, err := d.runGroup(ctx, app, groups[app])
		all = append(all, outs...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

func (d *DemoRunner) runGroup(ctx context.Context, app string, group []Attempt) ([]Outcome, error) {
	d.header(app)
	start := time.Now().Add(-time.Second)
	var specs []string
	var probes []Probe
	for _, a := range group {
		if a.Inbound != nil {
			specs = append(specs, a.Inbound.Proto+":"+strconv.Itoa(int(a.Inbound.Port)))
		}
		if a.Probe != nil {
			probes = append(probes, *a.Probe)
		}
	}
	var stopServer func()
	if len(specs) > 0 {
		var err error
		if stopServer, err = d.startServer(ctx, app, specs); err != nil {
			return nil, err
		}
		defer stopServer()
	}
	var results []ProbeResult
	if len(probes) > 0 {
		var err error
		if results, err = d.runProbes(ctx, app, probes); err != nil {
			return nil, err
		}
	}
	outs := make([]Outcome, len(group))
	next := 0
	for i, a := range group {
		if a.Probe != nil {
			outs[i] = Judge(a, results[next])
			next++
			continue
		}
		outs[i] = JudgeInbound(a, d.inbound(ctx, a.Inbound))
	}
	d.attachAudit(ctx, app, start, outs)
	for _, o := range outs {
		d.print(o)
	}
	return outs, ctx.Err()
}

func (d *DemoRunner) header(app string) {
	if app == "" {
		fmt.Fprintf(d.Out, "\na process of no app (root in the device, outside every app's identity; unmanaged: %s)\n", d.Policy.Unmanaged)
		return
	}
	a, _ := d.Plan.App(app)
	line := fmt.Sprintf("\n%s (%s)", app, a.Identity())
	if pa := d.Policy.App(app); pa != nil {
		var parts []string
		if ls := listed(pa); ls != "" {
			parts = append(parts, "may connect to "+ls)
		}
		if len(pa.TCPServerPorts) > 0 {
			parts = append(parts, "serves TCP "+joinPorts(pa.TCPServerPorts))
		}
		if len(pa.UDPServerPorts) > 0 {
			parts = append(parts, "serves UDP "+joinPorts(pa.UDPServerPorts))
		}
		if len(parts) > 0 {
			line += ": " + strings.Join(parts, "; ")
		}
	}
	fmt.Fprintln(d.Out, line)
}

func (d *DemoRunner) print(o Outcome) {
	head := fmt.Sprintf("  %-8s %s", o.Got, o.Label)
	if o.Summary != "answered" && o.Summary != "connected" {
		head += ": " + o.Summary
	}
	fmt.Fprintln(d.Out, head)
	for _, e := range o.Evidence {
		fmt.Fprintf(d.Out, "           %s\n", e)
	}
	for _, e := range o.Audit {
		fmt.Fprintf(d.Out, "           %s\n", e)
	}
	fmt.Fprintf(d.Out, "           why: %s\n", o.Why)
	if !o.Match() {
		fmt.Fprintf(d.Out, "  !! MISMATCH: the policy says %s, but the attempt was %s\n", o.Expect, o.Got)
	}
}

// runProbes runs the probes as app inside the device, in one process.
func (d *DemoRunner) runProbes(ctx context.Context, app string, probes []Probe) ([]ProbeResult, error) {
	in, err := json.Marshal(probes)
	if err != nil {
		return nil, err
	}
	cmd, release, err := d.Plan.Command(app, append(append([]string{}, d.Plan.Helper...), "probe", "--ca", d.Plan.CACert))
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	err = cmd.Start()
	release()
	if err != nil {
		return nil, fmt.Errorf("run %s's attempts: %w", appLabel(app), err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("run %s's attempts: %w: %s", appLabel(app), err, strings.TrimSpace(stderr.String()))
	}
	var results []ProbeResult
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil || len(results) != len(probes) {
		return nil, fmt.Errorf("run %s's attempts: bad answer from the probe (%v): %s", appLabel(app), err, strings.TrimSpace(stderr.String()))
	}
	return results, nil
}

// startServer runs app's servers in the device and waits until they listen.
func (d *DemoRunner) startServer(ctx context.Context, app string, specs []string) (func(), error) {
	args := append(append([]string{}, d.Plan.Helper...), "serve", "--app", app)
	cmd, release, err := d.Plan.Command(app, append(args, specs...))
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		release()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		release()
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Start()
	release()
	if err != nil {
		return nil, fmt.Errorf("start %s's servers: %w", app, err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if s == "ready" {
			return stop, nil
		}
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("start %s's servers: %s", app, strings.TrimSpace(stderr.String()))
}

// inbound connects from the internet to the device's LAN address.
func (d *DemoRunner) inbound(ctx context.Context, in *Inbound) StepResult {
	ap := netip.AddrPortFrom(DeviceLANv4.Addr(), in.Port)
	res := StepResult{Addr: ap.String()}
	dctx, cancel := context.WithTimeout(ctx, inboundTimeout)
	defer cancel()
	start := time.Now()
	conn, err := DialIn(dctx, d.Plan.InternetNetns, in.Proto, ap.String())
	if err != nil {
		res.Took, res.Err, res.Errno = time.Since(start), err.Error(), errno(err)
		return res
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(inboundTimeout))
	if in.Proto == "udp" {
		if _, err := conn.Write([]byte("hello from the internet\n")); err != nil {
			res.Took, res.Err, res.Errno = time.Since(start), err.Error(), errno(err)
			return res
		}
	}
	buf := make([]byte, 200)
	n, err := conn.Read(buf)
	res.Took = time.Since(start)
	if err != nil {
		res.Err, res.Errno = err.Error(), errno(err)
		if errors.Is(err, io.EOF) {
			res.Errno = ""
		}
		return res
	}
	res.OK, res.Detail = true, "the server answered "+strconv.Quote(strings.TrimSpace(string(buf[:n])))
	return res
}

// attachAudit adds pinholed's audit records to the denied outcomes they
// explain, waiting briefly for records still on their way, and then says
// in the summary that pinhole's firewall did it.
func (d *DemoRunner) attachAudit(ctx context.Context, app string, since time.Time, outs []Outcome) {
	if d.Audit == nil {
		return
	}
	identity := app
	if identity == "" {
		identity = policy.UnmanagedName
	}
	want := 0
	for _, o := range outs {
		if o.Got == Denied && auditKey(o, identity) != nil {
			want++
		}
	}
	if want == 0 {
		return
	}
	var recs []audit.Record
	deadline := time.Now().Add(auditWait)
	for {
		var err error
		recs, err = d.Audit(ctx, "", since)
		found := 0
		if err == nil {
			for _, o := range outs {
				if k := auditKey(o, identity); o.Got == Denied && k != nil && matchRecord(k, recs) != nil {
					found++
				}
			}
		}
		if found == want || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, o := range outs {
		k := auditKey(o, identity)
		if o.Got != Denied || k == nil {
			continue
		}
		if r := matchRecord(k, recs); r != nil {
			outs[i].Audit = append(outs[i].Audit, auditText(r))
			outs[i].Summary = byFirewall(o)
		}
	}
}

// byFirewall is the summary of a denial that pinhole's audit log confirms.
func byFirewall(o Outcome) string {
	s := o.Summary
	switch {
	case o.Inbound != nil:
		return "dropped by pinhole's firewall (no answer within " + inboundTimeout.String() + ")"
	case strings.HasPrefix(s, "the DNS query"):
		return "its DNS query was rejected by pinhole's firewall in " + ms(o.Took)
	case strings.HasSuffix(s, "was refused"):
		return "connection refused by pinhole's firewall in " + ms(o.Took)
	case strings.Contains(s, "rejected"):
		return strings.Replace(s, "was rejected", "was rejected by pinhole's firewall", 1) + " (" + ms(o.Took) + ")"
	}
	return s + " (pinhole's firewall)"
}

type recordKey struct {
	identity string // "": any
	dir      logprefix.Direction
	dst      netip.Addr // invalid: any
	port     uint16
}

// auditKey says which audit record would show the outcome's denial: the
// firewall logs denied packets, not DNS answers. Inbound packets to a port
// no app declared are logged as unmanaged, so any identity matches them.
func auditKey(o Outcome, identity string) *recordKey {
	if o.Inbound != nil {
		return &recordKey{dir: logprefix.In, port: o.Inbound.Port}
	}
	if o.Probe == nil {
		return nil
	}
	if o.Probe.Name != "" {
		if strings.HasPrefix(o.Summary, "the DNS query") {
			return &recordKey{identity: identity, dir: logprefix.Out, dst: o.Probe.Server.Addr(), port: o.Probe.Server.Port()}
		}
		return nil // an NXDOMAIN leaves no packet to log
	}
	return &recordKey{identity: identity, dir: logprefix.Out, dst: o.Probe.Addr, port: o.Probe.Port}
}

func matchRecord(k *recordKey, recs []audit.Record) *audit.Record {
	for i := len(recs) - 1; i >= 0; i-- {
		r := &recs[i]
		if r.Direction == k.dir && r.DstPort == k.port && (!k.dst.IsValid() || r.Dst == k.dst) &&
			(k.identity == "" || r.App == k.identity) {
			return r
		}
	}
	return nil
}

func auditText(r *audit.Record) string {
	s := fmt.Sprintf("pinhole's audit log: %s %s %s %s %s -> %s",
		r.Verdict, r.Direction, r.App, r.Proto, net.JoinHostPort(r.Src.String(), strconv.Itoa(int(r.SrcPort))), net.JoinHostPort(r.Dst.String(), strconv.Itoa(int(r.DstPort))))
	if r.Count > 1 {
		s += fmt.Sprintf(" (%d packets)", r.Count)
	}
	if r.Direction == logprefix.In && r.App == policy.UnmanagedName {
		s += " (logged as unmanaged: no app declared that port)"
	}
	if len(r.LearnedBy) > 0 {
		s += "; that address was looked up by " + strings.Join(r.LearnedBy, ", ")
	}
	return s
}
