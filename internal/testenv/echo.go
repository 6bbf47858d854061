package testenv

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Echoed is what the echo upstream received, as it answers it.
type Echoed struct {
	Method string `json:"method"`
	// URI is the request target exactly as it arrived.
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// Echo is an upstream that answers every request, on every path, with 200
// and the request it got as JSON (Echoed), so a test sees exactly which
// headers Nginx passed on.
type Echo struct {
	*httptest.Server
	// Addr is host:port, the form Nginx's upstream blocks want.
	Addr string
}

// StartEcho starts an echo upstream on a loopback port, closed with the test.
func StartEcho(t testing.TB) *Echo {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Echoed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(s.Close)
	return &Echo{Server: s, Addr: s.Listener.Addr().(*net.TCPAddr).String()}
}
