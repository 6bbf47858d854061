package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// drain is serve's graceful shutdown. On SIGTERM authz
//
//  1. answers /readyz with 503, so a balancer that probes it (a Kubernetes
//     readiness probe, a load balancer's health check) stops sending new
//     traffic, and turns keep-alive off: every answer says
//     "Connection: close" and idle keep-alive connections are closed, so
//     pooled clients (Nginx's upstream keepalive) reconnect to whichever
//     instance their balancer now picks;
//  2. keeps accepting and answering for --shutdown-delay, the time a
//     balancer needs to notice (Kubernetes removes an endpoint a little
//     after it has sent SIGTERM: the preStop-sleep pattern);
//  3. stops accepting and waits up to --shutdown-timeout for requests in
//     progress, as before.
//
// Nginx does not read /readyz: it learns of a stopped instance from a
// refused connection, and the shipped config retries every auth
// subrequest on the next instance (proxy_next_upstream in
// nginx/authz/verify.conf), so behind Nginx a delay of 0 loses no request.
type drain struct {
	draining atomic.Bool
}

// readyz answers 503 once the drain has begun, and asks next otherwise.
func (d *drain) readyz(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("shutting down\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// run drains servers as the type's comment says.
func (d *drain) run(log *slog.Logger, servers []server, delay, timeout time.Duration) error {
	d.draining.Store(true)
	for _, s := range servers {
		s.SetKeepAlivesEnabled(false)
	}
	if delay > 0 {
		log.Info("shutting down: not ready, still serving", "delay", delay)
		time.Sleep(delay) // the delay itself is the point: serve while balancers catch up
	}
	log.Info("shutting down: draining in-flight requests", "timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
}
