package frontdoor

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/authztest"
	"github.com/authz/authz/tokens"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// The front door is tested against the real decider: an authz.Verifier
// over a real redis-server, configured as authz's own tests configure it.

const (
	testSecret = authztest.Secret
	aliceJSON  = authztest.AliceJSON
	svcJSON    = authztest.SvcJSON
)

// tokenJSON is a passport session of a user signed in through OAuth, the
// access token kept beside the identity.
const tokenJSON = `{"cookie":{"originalMaxAge":3600000},"passport":{"user":{"id":"alice","roles":["admin"],"accessToken":"ya29.a0-access_token~x/y+z="}}}`

// fixture is a Verifier over a real redis-server started for the test,
// and the front door's metrics on the same registry.
type fixture struct {
	*authztest.Fixture
	t   testing.TB
	rdb *redis.Client
	v   *authz.Verifier
	reg *prometheus.Registry
	m   *Metrics
}

func newFixture(t testing.TB, mod func(*authz.Config)) *fixture {
	t.Helper()
	cfg := authztest.Config()
	if mod != nil {
		mod(&cfg)
	}
	base := authztest.Start(t, cfg, io.Discard)
	m, err := NewMetrics(base.Reg, base.V.BoundCounter)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{Fixture: base, t: t, rdb: base.RDB, v: base.V, reg: base.Reg, m: m}
}

// token creates an API token for doc and returns it.
func (f *fixture) token(doc string, ttl time.Duration) string {
	f.t.Helper()
	tok, _, err := tokens.New(f.v).Create(context.Background(), "", []byte(doc), ttl)
	if err != nil {
		f.t.Fatalf("CreateToken(%s): %v", doc, err)
	}
	return tok
}

// bound is authz_bounds_hit_total{bound=name}.
func (f *fixture) bound(name string) float64 {
	return testutil.ToFloat64(f.v.BoundCounter(name))
}

// session and verify are authztest's, under the names the tests use.
func (f *fixture) session(json string, ttl time.Duration) (sid, cookie string) {
	f.t.Helper()
	return f.Session(json, ttl)
}

func (f *fixture) verify(cookie, query string, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.Verify(cookie, query, hdr...)
}
