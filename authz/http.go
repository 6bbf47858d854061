package authz

import (
	"context"
	"net/http"
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
