package frontdoor

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The front door's series keep the names and labels they had when the
// server was part of package authz: authz_connections_open registered
// here, its caps as labels of the one authz_bounds_hit_total the decider
// registers.
func TestMetricsNames(t *testing.T) {
	f := newFixture(t, nil)
	s := New(Config{}, f.v, nil, f.m, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(t.Context()) })
	exchange(t, ln.Addr().String(), "GET /verify HTTP/1.1\r\nCookie: "+strings.Repeat("a", 70<<10)+"\r\n\r\n", 1)
	testenv.WaitFor(t, 5*time.Second, "the refused connection to end", func() bool { return f.m.conns.Load() == 0 })
	want := `
# HELP authz_connections_open Connections open on --listen (at most --max-connections).
# TYPE authz_connections_open gauge
authz_connections_open 0
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "authz_connections_open"); err != nil {
		t.Error(err)
	}
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	bounds := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "authz_bounds_hit_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "bound" {
					bounds[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	for _, b := range []string{"connections", "request_header", "read_header_timeout"} {
		if _, ok := bounds[b]; !ok {
			t.Errorf("authz_bounds_hit_total{bound=%q} not exported; have %v", b, bounds)
		}
	}
	if bounds["request_header"] != 1 {
		t.Errorf("authz_bounds_hit_total{bound=request_header} = %v after one oversized header, want 1", bounds["request_header"])
	}
}
