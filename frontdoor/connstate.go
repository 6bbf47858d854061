package frontdoor

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ConnState returns an http.Server ConnState hook that does for net/http
// (--stdlib-http) what Server does itself: it counts the connections open
// in authz_connections_open and, past max, counts the new one in
// authz_bounds_hit_total{bound="connections"} and closes the connection
// that has waited longest for a request (new or idle) to make room, or the
// new one when every other is being answered.
func ConnState(max int, m *Metrics) func(net.Conn, http.ConnState) {
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
			m.conns.Add(1)
			open++
			waiting[c] = time.Now()
			if open > max {
				m.connections.Inc()
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
			m.conns.Add(-1)
			open--
		}
	}
}
