package lab

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ConnectTestBody is what the connection check URL answers, as Microsoft's
// server does.
const ConnectTestBody = "Microsoft Connect Test"

// WebHandler answers every request of the lab's web server: the connection
// check at /connecttest.txt, and for anything else a line that names the
// host, the scheme and the client.
func WebHandler(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		log.Info("request", "scheme", scheme, "host", host, "path", r.URL.Path, "client", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Path == "/connecttest.txt" {
			fmt.Fprint(w, ConnectTestBody)
			return
		}
		fmt.Fprintf(w, "pinhole lab: %s://%s%s answered %s\n", scheme, host, r.URL.Path, r.RemoteAddr)
	})
}

// ServeWeb runs the lab's web server (HTTP on HTTPPort, HTTPS on HTTPSPort,
// every address) until ctx ends.
func ServeWeb(ctx context.Context, p *Plan, log *slog.Logger) error {
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		return fmt.Errorf("load the lab's server certificate: %w", err)
	}
	h := WebHandler(log)
	servers := []*http.Server{
		{Addr: ":" + strconv.Itoa(HTTPPort), Handler: h, ReadHeaderTimeout: 10 * time.Second},
		{Addr: ":" + strconv.Itoa(HTTPSPort), Handler: h, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}},
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", s.Addr, err)
		}
		go func() {
			var err error
			if s.TLSConfig != nil {
				err = s.ServeTLS(l, "", "")
			} else {
				err = s.Serve(l)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		log.Info("listening", "addr", s.Addr, "tls", s.TLSConfig != nil)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	return nil
}
