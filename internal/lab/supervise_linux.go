package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pinhole-net/pinhole/internal/wait"
)

const (
	// stopTimeout is how long a service has to exit after SIGTERM.
	stopTimeout = 5 * time.Second
	// startTimeout bounds the wait for one service to answer.
	startTimeout = 20 * time.Second
	maxBackoff   = 30 * time.Second
	stateFile    = "status.json"
)

// SupervisorState is what the supervisor writes to status.json whenever a
// service changes.
type SupervisorState struct {
	PID      int            `json:"pid"`
	Started  time.Time      `json:"started"`
	Services []ServiceState `json:"services"`
}

// ServiceState is one service as the supervisor sees it.
type ServiceState struct {
	Name string `json:"name"`
	// State is starting, running, restarting, failed or stopped.
	State    string    `json:"state"`
	PID      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since"`
	LastExit string    `json:"last_exit,omitempty"`
}

func readSupervisorState(dir string) (*SupervisorState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var st SupervisorState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}

type supervisor struct {
	plan    *Plan
	log     *slog.Logger
	nsenter string
	started time.Time

	mu      sync.Mutex
	runners []*runner
}

// Supervise is the supervisor: it starts the plan's services in order,
// each once the one before answers, writes "ready" (or "error: ...") to
// ready, restarts services that exit, and stops them all in reverse order
// when ctx ends.
func Supervise(ctx context.Context, dir string, ready io.WriteCloser, log *slog.Logger) error {
	report := func(msg string) {
		if ready != nil {
			io.WriteString(ready, msg+"\n")
			ready.Close()
			ready = nil
		}
	}
	defer report("error: the supervisor stopped before its services were up")
	p, err := LoadPlan(Layout{Name: filepath.Base(dir)})
	if err != nil {
		report("error: " + err.Error())
		return err
	}
	nsenter, err := FindTool("nsenter")
	if err != nil {
		report("error: " + err.Error())
		return err
	}
	s := &supervisor{plan: p, log: log, nsenter: nsenter, started: time.Now().UTC()}
	defer s.stopAll()
	for _, svc := range p.Services {
		r := &runner{svc: svc, s: s, state: ServiceState{Name: svc.Name, State: "starting", Since: time.Now().UTC()}}
		s.mu.Lock()
		s.runners = append(s.runners, r)
		s.mu.Unlock()
		if err := r.start(); err != nil {
			report("error: " + err.Error())
			return err
		}
		if err := r.waitReady(ctx); err != nil {
			err = fmt.Errorf("%s: %w\n%s", svc.Name, err, tail(r.logPath(), 10))
			report("error: " + oneLine(err.Error()))
			return err
		}
		log.Info("service up", "service", svc.Name, "pid", r.pid())
		go r.watch(ctx)
	}
	report("ready")
	<-ctx.Done()
	log.Info("stopping the lab's services")
	return nil
}

func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

// writeState saves every service's state; callers hold s.mu.
func (s *supervisor) writeStateLocked() {
	st := SupervisorState{PID: os.Getpid(), Started: s.started}
	for _, r := range s.runners {
		r.mu.Lock()
		st.Services = append(st.Services, r.state)
		r.mu.Unlock()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(s.plan.Dir, stateFile), append(data, '\n'), 0o644)
	}
	if err != nil {
		s.log.Warn("write status", "err", err)
	}
}

func (s *supervisor) writeState() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeStateLocked()
}

// stopAll stops the services, last started first.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	runners := slices.Clone(s.runners)
	s.mu.Unlock()
	slices.Reverse(runners)
	for _, r := range runners {
		r.stop()
		s.log.Info("service stopped", "service", r.svc.Name)
	}
	s.writeState()
}

// runner runs one service and restarts it when it exits.
type runner struct {
	svc Service
	s   *supervisor

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	stopping bool
	state    ServiceState
}

func (r *runner) logPath() string { return filepath.Join(r.s.plan.Dir, "logs", r.svc.Name+".log") }

func (r *runner) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.PID
}

func (r *runner) setState(f func(*ServiceState)) {
	r.mu.Lock()
	f(&r.state)
	r.mu.Unlock()
	r.s.writeState()
}

// start runs the service once inside its namespace; nsenter execs the
// service, so the process is the service itself.
func (r *runner) start() error {
	logf, err := os.OpenFile(r.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"--net=" + NetnsPath(r.svc.Netns), "--"}, r.svc.Argv...)
	cmd := exec.Command(r.s.nsenter, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		return errors.New("stopping")
	}
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("start %s: %w", r.svc.Name, err)
	}
	done := make(chan struct{})
	r.cmd, r.done = cmd, done
	r.state.PID, r.state.Since = cmd.Process.Pid, time.Now().UTC()
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		r.setState(func(st *ServiceState) {
			st.LastExit = exitText(err)
			st.PID = 0
		})
		close(done)
	}()
	return nil
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return "exit status 0"
}

// waitReady polls the service's checks until all answer.
func (r *runner) waitReady(ctx context.Context) error {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	for _, c := range r.svc.Ready {
		var lastErr error
		ok := wait.Until(startTimeout, func() bool {
			select {
			case <-done:
				lastErr = errors.New("exited at start")
				return true
			case <-ctx.Done():
				lastErr = ctx.Err()
				return true
			default:
			}
			lastErr = dialCheck(ctx, c)
			return lastErr == nil
		})
		if !ok {
			return fmt.Errorf("no answer on %s %s within %v: %w", c.Network, c.Addr, startTimeout, lastErr)
		}
		if lastErr != nil {
			return lastErr
		}
	}
	r.setState(func(st *ServiceState) { st.State = "running" })
	return nil
}

func dialCheck(ctx context.Context, c Check) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var (
		conn net.Conn
		err  error
	)
	if c.Network == "unix" {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", c.Addr)
	} else {
		conn, err = DialIn(ctx, c.Netns, c.Network, c.Addr)
	}
	if err != nil {
		return err
	}
	return conn.Close()
}

// watch restarts the service whenever it exits, with a growing pause.
func (r *runner) watch(ctx context.Context) {
	backoff := time.Second
	for {
		r.mu.Lock()
		done := r.done
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-done:
		}
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			return
		}
		ran := time.Since(r.state.Since)
		r.mu.Unlock()
		if ran > time.Minute {
			backoff = time.Second
		}
		r.s.log.Warn("service exited; restarting", "service", r.svc.Name, "in", backoff)
		r.setState(func(st *ServiceState) { st.State = "restarting" })
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		if err := r.start(); err != nil {
			r.s.log.Error("restart", "service", r.svc.Name, "err", err)
			r.setState(func(st *ServiceState) { st.State, st.LastExit = "failed", err.Error() })
			continue
		}
		r.setState(func(st *ServiceState) { st.State, st.Restarts = "running", st.Restarts+1 })
	}
}

// stop ends the service: SIGTERM, then SIGKILL after stopTimeout.
func (r *runner) stop() {
	r.mu.Lock()
	r.stopping = true
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-done
		}
	}
	r.setState(func(st *ServiceState) { st.State = "stopped" })
}
