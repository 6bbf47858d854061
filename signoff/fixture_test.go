package signoff

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/authztest"
	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

const (
	testSecret = authztest.Secret
	aliceJSON  = authztest.AliceJSON
	bobJSON    = authztest.BobJSON
	twoTenants = authztest.TwoTenants
)

// fixture is a Verifier over a real redis-server started for the test, and
// the Signoff over it, both with their metrics in reg.
type fixture struct {
	*authztest.Fixture
	t     testing.TB
	redis *testenv.Redis
	rdb   *redis.Client
	reg   *prometheus.Registry
	v     *authz.Verifier
	s     *Signoff
}

func newFixture(t testing.TB, mod func(*authz.Config)) *fixture {
	t.Helper()
	cfg := authztest.Config()
	if mod != nil {
		mod(&cfg)
	}
	base := authztest.Start(t, cfg, io.Discard)
	s, err := New(base.V, base.Reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{Fixture: base, t: t, redis: base.Redis, rdb: base.RDB, reg: base.Reg, v: base.V, s: s}
}

// build makes a Verifier and its Signoff on one registry, logging to log.
func build(t testing.TB, cfg authz.Config, rdb redis.UniversalClient, log io.Writer) (*authz.Verifier, *Signoff, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l := slog.New(slog.NewTextHandler(log, nil))
	v, err := authz.New(cfg, rdb, reg, l)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(v, reg, l)
	if err != nil {
		t.Fatal(err)
	}
	return v, s, reg
}

// tenantSession stores a session under a tenant's prefix.
func (f *fixture) tenantSession(prefix, sid, json string) {
	f.t.Helper()
	if err := f.rdb.Set(context.Background(), prefix+sid, json, time.Hour).Err(); err != nil {
		f.t.Fatal(err)
	}
}

// counter is the value of the counter name{result=result} in reg, as
// /metrics would show it.
func counter(t testing.TB, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q} in the registry", name, result)
	return 0
}

// session, verify and calls are authztest's, under the names the tests
// use.
func (f *fixture) session(json string, ttl time.Duration) (sid, cookie string) {
	f.t.Helper()
	return f.Session(json, ttl)
}

func (f *fixture) verify(cookie, query string, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.Verify(cookie, query, hdr...)
}
