package lab

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// RunHelper runs one of the lab's helper roles; the pinhole binary (hidden
// command "lab _helper") and test binaries call it:
//
//	supervise --dir DIR    the supervisor (fd 3: where to report "ready")
//	web --dir DIR          the internet's HTTP and HTTPS server
//	probe --ca FILE        runs the Probes (JSON on stdin), results on stdout
//	serve --app NAME tcp:P|udp:P...   servers of an app, "ready" on stdout
func RunHelper(ctx context.Context, role string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the lab's state directory")
	ca := fs.String("ca", "", "CA certificates to trust (PEM)")
	app := fs.String("app", "", "the app's name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch role {
	case "supervise":
		if *dir == "" {
			return errors.New("supervise: --dir is required")
		}
		return Supervise(ctx, filepath.Clean(*dir), os.NewFile(3, "ready"), log)
	case "web":
		p, err := LoadPlan(Layout{Name: filepath.Base(filepath.Clean(*dir))})
		if err != nil {
			return err
		}
		return ServeWeb(ctx, p, log)
	case "probe":
		return probeMain(ctx, *ca, stdin, stdout)
	case "serve":
		return serveMain(ctx, *app, fs.Args(), stdin, stdout, log)
	}
	return fmt.Errorf("no lab helper role %q", role)
}

func probeMain(ctx context.Context, caFile string, stdin io.Reader, stdout io.Writer) error {
	roots := x509.NewCertPool()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no certificate", caFile)
		}
	}
	var probes []Probe
	if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&probes); err != nil {
		return fmt.Errorf("read probes: %w", err)
	}
	results := make([]ProbeResult, len(probes))
	for i, pr := range probes {
		results[i] = RunProbe(ctx, pr, roots)
	}
	return json.NewEncoder(stdout).Encode(results)
}

// serveMain listens on every address at each "tcp:PORT" or "udp:PORT" and
// greets whoever comes: TCP clients get a line, UDP datagrams an answer.
// It prints "ready" once listening and ends when stdin closes.
func serveMain(ctx context.Context, app string, specs []string, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, spec := range specs {
		proto, portText, ok := strings.Cut(spec, ":")
		port, err := strconv.ParseUint(portText, 10, 16)
		if !ok || err != nil || (proto != "tcp" && proto != "udp") {
			return fmt.Errorf("serve: %q is not tcp:PORT or udp:PORT", spec)
		}
		greeting := fmt.Sprintf("hello from %s on %s port %d\n", app, proto, port)
		addr := ":" + strconv.FormatUint(port, 10)
		if proto == "tcp" {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			closers = append(closers, l)
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					log.Info("connection", "port", port, "from", c.RemoteAddr())
					io.WriteString(c, greeting)
					c.Close()
				}
			})
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		closers = append(closers, pc)
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				log.Info("datagram", "port", port, "from", from)
				pc.WriteTo([]byte(greeting), from)
			}
		})
	}
	fmt.Fprintln(stdout, "ready")
	go func() {
		io.Copy(io.Discard, bufio.NewReader(stdin))
		cancel()
	}()
	<-ctx.Done()
	for _, c := range closers {
		c.Close()
	}
	closers = nil
	return nil
}
