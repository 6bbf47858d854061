package authz

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Handler routes /verify to v and adds /healthz (the process answers) and
// /readyz (Redis answers), so the listener Nginx talks to can be probed too.
func (v *Verifier) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/verify", v)
	mux.HandleFunc("/healthz", Healthz)
	mux.Handle("/readyz", v.ReadyHandler())
	return mux
}

// Healthz answers 200 while the process serves HTTP.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// ReadyHandler answers 200 when Redis answers a PING, else 503, so a load
// balancer stops sending traffic to an instance that could only answer 503.
func (v *Verifier) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := v.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("redis unreachable\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
}

// ConnState returns an http.Server ConnState hook that does for net/http
// (--stdlib-http) what Server does itself: it counts the connections open
// in authz_connections_open and, past max, counts the new one in
// authz_bounds_hit_total{bound="connections"} and closes the connection
// that has waited longest for a request (new or idle) to make room, or the
// new one when every other is being answered.
func (v *Verifier) ConnState(max int) func(net.Conn, http.ConnState) {
	var (
		mu      sync.Mutex
		waiting = make(map[net.Conn]time.Time) // new or idle, since when
		open    int
	)
	return func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			v.metrics.conns.Add(1)
			open++
			waiting[c] = time.Now()
			if open > max {
				v.metrics.bound("connections")
				// The new connection waits least: it is closed only when
				// no other is waiting. The server reads from the closed
				// one, fails, and reports StateClosed.
				oldest, since := c, time.Time{}
				for o, t := range waiting {
					if o != c && (oldest == c || t.Before(since)) {
						oldest, since = o, t
					}
				}
				delete(waiting, oldest)
				oldest.Close()
			}
		case http.StateIdle:
			waiting[c] = time.Now()
		case http.StateActive:
			delete(waiting, c)
		case http.StateClosed, http.StateHijacked:
			delete(waiting, c)
			v.metrics.conns.Add(-1)
			open--
		}
	}
}
