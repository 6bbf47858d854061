package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Verifier answers Nginx auth_request subrequests: cookie, then cache or
// Redis, then the location's rules. It is an http.Handler for /verify.
type Verifier struct {
	cfg Config
	rdb redis.UniversalClient
	// revived watches sessions after their logout for late saves
	// (revived.go).
	revived revivedWatch
	// tenants routes a request's host to how its sessions are read; one
	// tenant serving every host without a tenant file.
	tenants   atomic.Pointer[tenantSet]
	tenantSeq atomic.Uint64
	cache     *cache
	rules     ruleCache
	flight    singleflight.Group
	metrics   *metrics
	log       *slog.Logger
	// touches bounds concurrent sliding-expiry writes; a touch that finds it
	// full is skipped and retried on a later request.
	touches chan struct{}
	// bypass turns the cache off while the logout subscription is down:
	// what is not heard cannot be trusted.
	bypass   atomic.Bool
	breakers *breakers
	// staleGuard vouches for StaleIfError (see stale).
	staleGuard atomic.Pointer[func(prefix string) bool]
	// scratch pools the buffers a request reads its cookie with.
	scratch sync.Pool
	// pending counts distinct Redis reads in flight (MaxPendingLoads).
	pending atomic.Int64
	// rateLogged rate-limits the log lines a client can cause at will, such
	// as an unknown host (unix nanoseconds of the last one).
	rateLogged atomic.Int64
}

// New builds a Verifier reading sessions through rdb. Metrics go to reg.
func New(cfg Config, rdb redis.UniversalClient, reg prometheus.Registerer, log *slog.Logger) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := checkTopology(&cfg, rdb); err != nil {
		return nil, err
	}
	v := &Verifier{
		cfg:      cfg,
		rdb:      rdb,
		cache:    newCache(cfg.CacheSize),
		breakers: newBreakers(cfg.Cluster, cfg.BreakerFailures, cfg.BreakerCooldown, cfg.RedisTimeout),
		log:      log,
		touches:  make(chan struct{}, 64),
	}
	v.scratch.New = func() any { return &scratch{buf: make([]byte, 0, cfg.MaxCookieBytes)} }
	m, err := newMetrics(reg, v.cache, rdb, v.breakers, cfg.Now)
	if err != nil {
		return nil, err
	}
	v.metrics = m
	if err := v.SetTenants(cfg.Tenants); err != nil {
		return nil, err
	}
	return v, nil
}

// Query is what a verify decision reads from an auth subrequest. Both
// ServeHTTP and frontdoor.Server build one.
type Query struct {
	// RawQuery holds the location's rules (allow_users=…&allow_roles=…).
	RawQuery string
	// Cookies are the request's Cookie header lines.
	Cookies []string
	// OriginalURI is X-Original-URI: where a 401 should come back to.
	OriginalURI string
	// Host is the host the user asked for (see Config.HostHeader); it selects
	// the tenant when a tenant file is loaded.
	Host string
	// Authorization is the request's (first) Authorization header.
	Authorization string
}

// Answer is a verify decision.
type Answer struct {
	Reason  Reason
	Session *Session // set when allowed
	// Redirect is the login URL for a 401.
	Redirect string
	// AccessToken is the session's access token, set only when allowed by
	// a location that relays it (access_token=): the answer carries it in
	// AccessTokenHeader.
	AccessToken string
}

// Decide answers q, recording metrics and the debug log line.
func (v *Verifier) Decide(ctx context.Context, q *Query) Answer {
	start := v.cfg.Now()
	reason, sess, t, rules := v.route(ctx, q, start)
	a := Answer{Reason: reason}
	switch reason.Status() {
	case http.StatusOK:
		a.Session = sess
		if rules != nil && rules.AccessToken != RelayNone {
			a.AccessToken = sess.accessToken
		}
	case http.StatusUnauthorized:
		a.Redirect = v.loginRedirect(t.loginURL, q.OriginalURI)
	}
	v.metrics.observe(reason, v.cfg.Now().Sub(start))
	if t != nil && !(v.cfg.BearerTokens && isBearer(q.Authorization)) { // a token is no session
		t.requests[reason.Outcome()].Inc()
	}
	if v.log.Enabled(ctx, slog.LevelDebug) {
		v.log.LogAttrs(ctx, slog.LevelDebug, "verify",
			slog.Int("status", reason.Status()), slog.String("reason", string(reason)),
			slog.String("uri", q.OriginalURI), slog.String("user", userOf(sess)))
	}
	return a
}

// OriginalURI picks the URI the user asked for from whichever convention
// the front proxy follows: Nginx's X-Original-URI (as nginx/ sends it),
// ingress-nginx's X-Original-URL (a whole URL: its path and query are
// kept), or Traefik's and Caddy's X-Forwarded-Uri. It only feeds the login
// redirect, which accepts nothing but a local path.
func OriginalURI(xOriginalURI, xOriginalURL, xForwardedURI string) string {
	switch {
	case xOriginalURI != "":
		return xOriginalURI
	case xOriginalURL != "":
		if u, err := url.Parse(xOriginalURL); err == nil && u.Path != "" {
			return u.RequestURI()
		}
		return ""
	}
	return xForwardedURI
}

// Where a request's host is read from (Config.HostHeader).
const (
	HostFromForwardedHost = "x-forwarded-host" // nginx/ sets it from $host, as Caddy and Traefik do
	HostFromOriginalURL   = "x-original-url"   // ingress-nginx's auth-url subrequests
	HostFromHost          = "host"             // a proxy that passes Host through
)

// requestHost picks the host the user asked for from the one header
// Config.HostHeader names, falling back to Host when it is absent. Only one
// is read, on purpose: proxies overwrite the header they set themselves but
// pass the others on from the client, and the host chooses whose sessions
// are checked, so a header a client could forge must never be consulted.
func (v *Verifier) requestHost(xForwardedHost, xOriginalURL, host string) string {
	switch v.cfg.HostHeader {
	case HostFromForwardedHost:
		if xForwardedHost != "" {
			// Taken whole: a list ("a, b") is no host and matches no
			// tenant. Its first element is not the safe one to pick, as
			// a proxy appending to the list passes on a client's.
			return xForwardedHost
		}
	case HostFromOriginalURL:
		if xOriginalURL != "" {
			// ingress-nginx builds the URL from the client's Host
			// header: "Host: a.test:1@b.test" would read as b.test.
			if u, err := url.Parse(xOriginalURL); err == nil && u.User == nil {
				return u.Host
			}
			return ""
		}
	}
	return host
}

// UserHeader is the response header carrying the identity.
func (v *Verifier) UserHeader() string { return v.cfg.UserHeader }

// ServeHTTP answers one auth subrequest. Every answer has an empty body so
// Nginx can keep its connection to authz alive. Any method is accepted:
// Nginx's auth_request subrequests are GET, but Traefik's and Caddy's
// forward the client's method, and a HEAD or POST must not fail there.
// A header it reads as one value (Authorization, X-Original-URI,
// X-Original-URL, X-Forwarded-Uri, X-Forwarded-Host) sent twice is
// answered 400 with Connection: close, as authz's own server answers it.
func (v *Verifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Index headers by their canonical keys: Get("X-Original-URI") would
	// allocate the canonical form on every request.
	twice := false
	only := func(k string) string {
		switch vs := r.Header[k]; len(vs) {
		case 0:
			return ""
		case 1:
			return vs[0]
		default:
			twice = true
			return ""
		}
	}
	origURL := only("X-Original-Url")
	origURI, fwdURI := only("X-Original-Uri"), only("X-Forwarded-Uri")
	fwdHost, authorization := only("X-Forwarded-Host"), only("Authorization")
	if twice {
		// A header read as one value came twice: which one counts is
		// for each reader to pick, and two readers (a proxy, authz) may
		// pick different ones. Refused, as authz's own server refuses it
		// (and net/http a second Host): a 400 denies the request.
		h := w.Header()
		h["Connection"] = connectionClose
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	q := Query{
		RawQuery:      r.URL.RawQuery,
		Cookies:       r.Header["Cookie"],
		OriginalURI:   OriginalURI(origURI, origURL, fwdURI),
		Host:          v.requestHost(fwdHost, origURL, r.Host),
		Authorization: authorization,
	}
	a := v.Decide(r.Context(), &q)
	h := w.Header()
	switch a.Reason.Status() {
	case http.StatusOK:
		h[v.cfg.UserHeader] = a.Session.userValue
		for _, x := range a.Session.Headers {
			h[x.Name] = x.Value
		}
		if a.AccessToken != "" {
			h[AccessTokenHeader] = []string{a.AccessToken}
		}
	case http.StatusUnauthorized:
		if a.Reason.bearer() {
			h["Www-Authenticate"] = bearerChallengeValue
		} else {
			h[redirectHeader] = []string{a.Redirect}
		}
	case http.StatusServiceUnavailable:
		h["Retry-After"] = retryAfter
	}
	w.WriteHeader(a.Reason.Status())
}

var (
	retryAfter      = []string{"1"}
	connectionClose = []string{"close"}
)

// unknownHost logs a request for a host no tenant serves, at most once a
// second.
func (v *Verifier) unknownHost(host string) {
	v.rateLimited(func() {
		if len(host) > 100 {
			host = host[:100] + "…"
		}
		v.log.Warn("verify for a host no tenant serves: answered 403 (check the tenant file's hosts)", "host", host)
	})
}

// rateLimited runs log unless a rate-limited line was logged less than a
// second ago: what a client can trigger at will must not flood the log.
func (v *Verifier) rateLimited(log func()) {
	now := v.cfg.Now().UnixNano()
	last := v.rateLogged.Load()
	if now-last < int64(time.Second) || !v.rateLogged.CompareAndSwap(last, now) {
		return
	}
	log()
}

func userOf(s *Session) string {
	if s == nil {
		return ""
	}
	return s.User
}

// route reads the location's rules and picks the tenant, by the rules'
// tenant= when they name one, else by host, then decides. The tenant is nil
// when no decision was made; the rules are returned for the answer to read.
func (v *Verifier) route(ctx context.Context, q *Query, now time.Time) (Reason, *Session, *tenant, *Rules) {
	var rules *Rules
	if q.RawQuery != "" {
		var err error
		var fresh bool
		if rules, err, fresh = v.rules.get(q.RawQuery); err != nil {
			if fresh {
				v.log.Error("bad rule in verify URL; every request to it fails with 500", "err", err)
			}
			return ReasonBadRule, nil, nil, nil
		}
	}
	ts := v.tenants.Load()
	var t *tenant
	if rules != nil && rules.Tenant != "" {
		// Named by the operator in the proxy's config: nothing a client
		// sends can change it.
		if t = ts.byName[rules.Tenant]; t == nil {
			v.rateLimited(func() {
				v.log.Error("verify URL names a tenant that is not configured; every request to it fails with 500", "tenant", rules.Tenant)
			})
			return ReasonBadRule, nil, nil, nil
		}
	} else if t = ts.lookup(q.Host); t == nil {
		v.unknownHost(q.Host)
		return ReasonUnknownHost, nil, nil, nil
	}
	if rules != nil && rules.AccessToken != RelayNone && len(t.decoder.accessTokenPaths) == 0 {
		v.rateLimited(func() {
			v.log.Error("verify URL relays an access token but no --access-token-path is set; every request to it fails with 500", "tenant", t.name)
		})
		return ReasonBadRule, nil, nil, nil
	}
	reason, sess := v.decide(ctx, t, rules, q, now)
	return reason, sess, t, rules
}

// decide runs the whole check for tenant t and returns why, with the
// session when allowed.
func (v *Verifier) decide(ctx context.Context, t *tenant, rules *Rules, q *Query, now time.Time) (Reason, *Session) {
	// An API client's token wins over any cookie it also sends (token.go).
	if v.cfg.BearerTokens && isBearer(q.Authorization) {
		return v.decideBearer(ctx, t, q.Authorization, rules, now)
	}
	sc := v.scratch.Get().(*scratch)
	defer v.scratch.Put(sc)
	defer sc.release()
	key, raw, reason := t.format.cookie(sc, q.Cookies)
	if reason != "" {
		return reason, nil
	}
	k := t.format.kind()
	nowNano := now.UnixNano()
	e := v.lookup(ctx, t, key, raw, k, nowNano)
	if e == nil {
		return ReasonStoreUnavailable, nil
	}
	if e.sess == nil {
		return e.reason, nil
	}
	s := e.sess
	if (k.hardExpires || v.cfg.EnforceExpires) && !s.Expires.IsZero() && !now.Before(s.Expires) {
		return ReasonExpired, nil
	}
	if rules != nil {
		if reason := rules.check(s); reason != "" {
			return reason, s
		}
	}
	if k.touch {
		v.maybeTouch(t, key, e, s, nowNano)
	}
	return ReasonOK, s
}

// answerFixedBytes is what the head of a verify answer holds besides the
// headers authz chooses: the status line, Date, Content-Length,
// "Connection: close" and the blank line (about 105 bytes from either
// server), rounded up.
const answerFixedBytes = 128

// redirectHeader carries a 401's login URL.
const redirectHeader = "X-Auth-Redirect"

// answerBudget is how many bytes of header lines an answer may carry
// besides its fixed part.
func (c *Config) answerBudget() int { return c.MaxAnswerHeaderBytes - answerFixedBytes }

// headerLineLen is the size of the line "name: value\r\n" with a value of
// n bytes.
func headerLineLen(name string, n int) int { return len(name) + 2 + n + 2 }

// loginRedirect is the X-Auth-Redirect of a 401, within the answer cap: an original URI too long to carry (escaping can triple it)
// gives the plain login URL, counted as a hit of the answer_header bound.
func (v *Verifier) loginRedirect(loginURL, orig string) string {
	budget := v.cfg.answerBudget()
	// Escaping never shortens: a URI over the budget needs no escaping to
	// know it cannot fit.
	if headerLineLen(redirectHeader, len(orig)) <= budget {
		r := loginRedirect(loginURL, v.cfg.RedirectParam, orig)
		if headerLineLen(redirectHeader, len(r)) <= budget {
			return r
		}
	}
	v.metrics.bound("answer_header")
	return loginURL
}

// loginRedirect is the URL a 401 should send the browser to, carrying the
// original URI. Only a same-site path is carried over: anything that could
// leave the site ("//evil", "/\evil", a full URL) becomes "/", so the login
// page cannot be turned into an open redirect.
func loginRedirect(loginURL, param, orig string) string {
	if !safeLocalPath(orig) {
		orig = "/"
	}
	sep := "?"
	if strings.Contains(loginURL, "?") {
		sep = "&"
	}
	return loginURL + sep + param + "=" + url.QueryEscape(orig)
}

func safeLocalPath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return false
	}
	return validHeaderValue(p)
}

// Ready reports whether the session store answers.
func (v *Verifier) Ready(ctx context.Context) error {
	if err := v.tenants.Load().list[0].store.ping(ctx); err != nil {
		v.metrics.redisErrors.WithLabelValues("ping").Inc()
		return err
	}
	return nil
}

// SessionHash names a session id in logs and output without revealing it:
// the first 8 hex digits of its SHA-256.
func SessionHash(sid string) string { return shortHash(sid) }

// shortHash names a session id in logs without revealing it.
func shortHash(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return hex.EncodeToString(sum[:4])
}
