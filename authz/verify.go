package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authz/authz/logout"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Config is everything a Verifier needs to know besides its Redis client.
// The zero value of a field means its documented default.
type Config struct {
	// Format is how sessions are carried (default FormatExpressSession);
	// tenants may each have their own.
	Format Format
	// CookieName is the session cookie (default: the format's, "connect.sid"
	// for express-session).
	CookieName string
	// Secrets verify cookie signatures; the first is the one apps sign with,
	// all of them verify, so a secret can be rotated. At least one is
	// required, but for client-sessions given both keys below. For
	// client-sessions it is the one secret both keys derive from; for
	// cookie-session, keygrip's key list.
	Secrets []string
	// EncryptionKey and SignatureKey are client-sessions' explicit keys,
	// each overriding the one derived from the secret.
	EncryptionKey, SignatureKey []byte
	// EncryptionAlgorithm is client-sessions' (aes256, the default, aes192
	// or aes128); SignatureAlgorithm the format's MAC (client-sessions:
	// sha256 by default; cookie-session: keygrip's sha1; fastify-session:
	// sha256).
	EncryptionAlgorithm, SignatureAlgorithm string
	// RevisionPath locates the session's revision in a cookie that carries
	// its session; a cookie whose revision is not its user's current one,
	// at RevisionPrefix + user, is refused (stale_revision). Nil: no
	// revision check.
	RevisionPath []string
	// RevisionPrefix is where users' current revisions live (default
	// "authz:rev:"; with tenants, RevisionPrefix + tenant + ":" + user).
	RevisionPrefix string
	// KeyPrefix is connect-redis's prefix (default "sess:").
	KeyPrefix string
	// RevokedPrefix names the markers logouts leave so a session an app
	// saves again cannot come back (default "authz:revoked:"; the marker
	// for a session is RevokedPrefix + KeyPrefix + id).
	RevokedPrefix string

	// MaxCookieBytes caps the cookie value (default 4096).
	MaxCookieBytes int
	// MaxSessionBytes caps the stored session read from Redis (default 1 MiB).
	MaxSessionBytes int
	// MaxIdentityHeaderBytes caps each identity header value; a longer
	// identity is an invalid session, a longer extra header is left out
	// (default 2048, at most 8192).
	MaxIdentityHeaderBytes int
	// MaxAnswerHeaderBytes caps the whole head of a verify answer (status
	// line, every header, the blank line), so that it always fits the
	// proxy's buffer for an upstream's headers (Nginx's proxy_buffer_size,
	// 4 KiB by default). Past it, --header values are left out of a 200
	// and a 401's X-Auth-Redirect becomes the plain login URL: an answer
	// the proxy cannot read counts as a failure of the instance, and
	// nothing a client sends may cause one (default 4096).
	MaxAnswerHeaderBytes int
	// MaxPendingLoads caps the distinct Redis reads in flight; a cache miss
	// past it answers 503 at once instead of queueing behind a slow Redis
	// (default 1000).
	MaxPendingLoads int

	// UserPaths are tried in order for the identity (default passport.user,
	// then user); an object found there gives its "id".
	UserPaths [][]string
	// RolesPaths are tried in order for the roles allow_roles checks
	// (default passport.user.roles, then user.roles).
	RolesPaths [][]string
	// UserHeader carries the identity to Nginx (default "X-Auth-User").
	UserHeader string
	// Headers are extra identity headers read from the session.
	Headers []HeaderMapping
	// AccessTokenPaths are tried in order for the session's access token
	// (e.g. passport.user.accessToken), which locations with access_token=
	// in their verify URL get back to relay to their service. None by
	// default: such a location is then a bad rule.
	AccessTokenPaths [][]string
	// EnforceExpires rejects sessions whose cookie.expires has passed. Off by
	// default: the Redis key's TTL is the truth, as for express-session.
	EnforceExpires bool

	// CacheSize bounds the cache in entries (default 100000).
	CacheSize int
	// CacheTTL is how long a loaded session is served from memory, never
	// past the key's own expiry (default 5s).
	CacheTTL time.Duration
	// NegativeCacheTTL is how long "no such session" is remembered (default
	// 1s; negative disables).
	NegativeCacheTTL time.Duration
	// RedisTimeout bounds each Redis call (default 250ms).
	RedisTimeout time.Duration
	// BreakerFailures consecutive Redis failures open the circuit for
	// BreakerCooldown: loads then fail at once instead of after
	// RedisTimeout (defaults 5 and 1s; negative BreakerFailures: off).
	BreakerFailures int
	BreakerCooldown time.Duration
	// StaleIfError lets a session the cache held keep being allowed for
	// this long past its cache TTL when Redis cannot be read, but only
	// while the logout subscription is live, so no logout can have been
	// missed (default 0: off, fail closed).
	StaleIfError time.Duration
	// Topology is how the Redis behind New's client is laid out (default
	// TopologySingle); New refuses a client that cannot serve it.
	Topology Topology
	// Cluster is the client's cluster masters, required with
	// TopologyCluster: the *redis.ClusterClient New is given. nil under
	// any other topology.
	Cluster ClusterNodes
	// RevokeWaitReplicas makes a logout wait (WAIT, at most RedisTimeout/2)
	// until this many replicas have its marker and DEL, so that a failover
	// right after it cannot undo it (Sentinel). 0: don't wait.
	RevokeWaitReplicas int

	// TouchInterval is how often, at most, an allowed session's TTL is
	// extended (default 60s; negative disables sliding expiry).
	TouchInterval time.Duration
	// StoreTTL is connect-redis's ttl option, used to touch sessions whose
	// cookie has no maxAge (default 86400s).
	StoreTTL time.Duration

	// BearerTokens accepts "Authorization: Bearer <token>" from API
	// clients, looked up under TokenPrefix (see token.go). Off by default.
	BearerTokens bool
	// TokenPrefix is where tokens live: TokenPrefix + hex SHA-256 of the
	// token (default "authz:token:").
	TokenPrefix string

	// LoginURL is where a 401 sends the browser (default "/login"); the
	// original URI goes in RedirectParam (default "rd").
	LoginURL      string
	RedirectParam string

	// Tenants, when set, select how a request is checked by its host
	// (see Tenant and LoadTenants); a host none of them serves is refused.
	// Without, one tenant made of the fields above serves every host.
	Tenants []Tenant

	// HostHeader names where the request's host is read, which picks the
	// tenant: HostFromForwardedHost (default), HostFromOriginalURL or
	// HostFromHost. It must be a header the front proxy sets itself.
	HostHeader string

	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Format == "" {
		c.Format = FormatExpressSession
	}
	def(&c.CookieName, c.Format.DefaultCookieName())
	def(&c.RevisionPrefix, "authz:rev:")
	def(&c.KeyPrefix, "sess:")
	def(&c.RevokedPrefix, "authz:revoked:")
	def(&c.TokenPrefix, TokenPrefixDefault)
	def(&c.UserHeader, "X-Auth-User")
	def(&c.LoginURL, "/login")
	def(&c.RedirectParam, "rd")
	def(&c.HostHeader, HostFromForwardedHost)
	defInt(&c.MaxCookieBytes, 4096)
	defInt(&c.MaxSessionBytes, 1<<20)
	defInt(&c.MaxIdentityHeaderBytes, 2048)
	defInt(&c.MaxAnswerHeaderBytes, 4096)
	defInt(&c.MaxPendingLoads, 1000)
	defInt(&c.CacheSize, 100000)
	defDur(&c.CacheTTL, 5*time.Second)
	defDur(&c.NegativeCacheTTL, time.Second)
	defDur(&c.RedisTimeout, 250*time.Millisecond)
	defInt(&c.BreakerFailures, 5)
	defDur(&c.BreakerCooldown, time.Second)
	defDur(&c.TouchInterval, 60*time.Second)
	defDur(&c.StoreTTL, 86400*time.Second)
	if c.UserPaths == nil {
		c.UserPaths = [][]string{{"passport", "user"}, {"user"}}
	}
	if c.RolesPaths == nil {
		c.RolesPaths = [][]string{{"passport", "user", "roles"}, {"user", "roles"}}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	for i, s := range c.Secrets {
		if s == "" {
			return fmt.Errorf("session secret %d is empty", i+1)
		}
	}
	if !validHeaderName(c.UserHeader) {
		return fmt.Errorf("user header %q is not a valid header name", c.UserHeader)
	}
	if c.CookieName == "" || strings.ContainsAny(c.CookieName, "=; \t\r\n") {
		return fmt.Errorf("cookie name %q is not a valid cookie name", c.CookieName)
	}
	if !strings.HasPrefix(c.LoginURL, "/") && !strings.HasPrefix(c.LoginURL, "https://") && !strings.HasPrefix(c.LoginURL, "http://") {
		return fmt.Errorf("login URL %q: want a path or an absolute http(s) URL", c.LoginURL)
	}
	switch c.HostHeader {
	case HostFromForwardedHost, HostFromOriginalURL, HostFromHost:
	default:
		return fmt.Errorf("host header %q: want %s, %s or %s", c.HostHeader, HostFromForwardedHost, HostFromOriginalURL, HostFromHost)
	}
	if c.CacheSize < 0 || c.MaxCookieBytes < 0 || c.MaxSessionBytes < 0 || c.MaxPendingLoads < 0 || c.StaleIfError < 0 {
		return errors.New("sizes and durations must not be negative")
	}
	if c.MaxIdentityHeaderBytes < 0 || c.MaxIdentityHeaderBytes > maxHeaderValue {
		return fmt.Errorf("identity header cap %d: want 1-%d bytes", c.MaxIdentityHeaderBytes, maxHeaderValue)
	}
	// What every answer must be able to carry: an identity as long as its
	// cap, and the plain login URL.
	if n := headerLineLen(c.UserHeader, c.MaxIdentityHeaderBytes); n > c.answerBudget() {
		return fmt.Errorf("answer header cap %d bytes cannot hold a %d-byte %s: raise it (and the proxy's buffer for upstream headers, Nginx's proxy_buffer_size) or lower the identity header cap", c.MaxAnswerHeaderBytes, c.MaxIdentityHeaderBytes, c.UserHeader)
	}
	if n := headerLineLen(redirectHeader, len(c.LoginURL)); n > c.answerBudget() {
		return fmt.Errorf("answer header cap %d bytes cannot hold the login URL (%d bytes)", c.MaxAnswerHeaderBytes, len(c.LoginURL))
	}
	return c.validateTokens()
}

// Verifier answers Nginx auth_request subrequests: cookie, then cache or
// Redis, then the location's rules. It is an http.Handler for /verify.
type Verifier struct {
	cfg Config
	rdb redis.UniversalClient
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
func (v *Verifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Index headers by their canonical keys: Get("X-Original-URI") would
	// allocate the canonical form on every request.
	first := func(k string) string {
		if vs := r.Header[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	origURL := first("X-Original-Url")
	q := Query{
		RawQuery:      r.URL.RawQuery,
		Cookies:       r.Header["Cookie"],
		OriginalURI:   OriginalURI(first("X-Original-Uri"), origURL, first("X-Forwarded-Uri")),
		Host:          v.requestHost(first("X-Forwarded-Host"), origURL, r.Host),
		Authorization: first("Authorization"),
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

var retryAfter = []string{"1"}

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

// entryKind is what differs between the things the cache holds: the
// sessions of each format and API tokens. Looking them up, sharing a Redis
// read, the circuit, the caps, negative entries and stale allows are the
// same.
type entryKind struct {
	// label names the kind and its ids in log lines; doc names a stored
	// value of the kind.
	label, doc string
	// open, for a session its cookie carries, decodes the cookie's raw
	// value before Redis is asked anything: a cookie that fails its MAC
	// or has expired never costs a Redis read.
	open func(t *tenant, raw string, now time.Time) (*Session, error)
	// read fetches what Redis holds for key: the stored JSON and its
	// key's TTL, or for an opened session, only whether it is over.
	read func(v *Verifier, ctx context.Context, t *tenant, key string, opened *Session) ([]byte, time.Duration, error)
	// prefix is the tenant's Redis prefix of the kind, for stale allows.
	prefix func(t *tenant) string
	// logID names key in a log line without revealing it.
	logID func(key string) string
	// Reasons for what a read can find besides an identity.
	notFound, tooLarge, invalid, anonymous Reason
	// noUser, when set, makes a value naming nobody an error worth a log
	// line (a token must name someone; a session may be anonymous).
	noUser error
	// expires: with EnforceExpires, cookie.expires bounds the entry.
	// hardExpires: the session's expiry bounds it whatever EnforceExpires
	// says, as the format's library checks it on every request.
	expires, hardExpires bool
	// touch slides the stored session's TTL (express-session's touch).
	touch bool
	// decode reads a stored value of the kind.
	decode func(d *decoder, data []byte, now time.Time) (*Session, error)
	// redisKeys are the (one or two) Redis keys read reads for key, whose
	// masters' breakers it answers to.
	redisKeys func(t *tenant, key string, opened *Session) []string
}

var sessionKind = &entryKind{
	label: "session", doc: "session",
	read: func(_ *Verifier, ctx context.Context, t *tenant, sid string, _ *Session) ([]byte, time.Duration, error) {
		return t.store.load(ctx, sid)
	},
	prefix:   func(t *tenant) string { return t.store.prefix },
	logID:    shortHash,
	notFound: ReasonNotFound, tooLarge: ReasonSessionTooLarge,
	invalid: ReasonInvalidSession, anonymous: ReasonAnonymous,
	expires: true, touch: true,
	decode: func(d *decoder, data []byte, _ time.Time) (*Session, error) { return d.decodeSession(data) },
	redisKeys: func(t *tenant, sid string, _ *Session) []string {
		return []string{t.store.prefix + sid, t.store.revokedKey(sid)}
	},
}

// lookup returns the entry for key (a session id, or a token's cache key)
// in tenant t: from the cache, else from Redis, else, when Redis fails, a
// stale one if StaleIfError allows it. nil means the store is unavailable.
// raw is what k.open decodes for a session its cookie carries.
func (v *Verifier) lookup(ctx context.Context, t *tenant, key []byte, raw string, k *entryKind, now int64) *entry {
	var e *entry
	if !v.bypass.Load() {
		// The same id under another tenant is another session.
		if e = v.cache.get(key, now); e != nil && e.tenant != t {
			e = nil
		}
	}
	if e != nil {
		v.metrics.cacheHits.Inc()
		return e
	}
	v.metrics.cacheMisses.Inc()
	e, err := v.load(ctx, t, key, raw, k)
	if err != nil {
		return v.stale(t, k, key, now)
	}
	return e
}

// load fetches key from Redis, sharing one call among concurrent misses.
// The flight key carries the invalidation generation: a request that
// arrives after a logout never joins a read that started before it.
// The tenant's id is in it too: the same session id under two tenants is
// two sessions.
func (v *Verifier) load(ctx context.Context, t *tenant, key []byte, raw string, k *entryKind) (*entry, error) {
	gen := v.cache.gen(key)
	flight := strconv.FormatUint(gen, 36) + ":" + t.id + ":" + string(key)
	res, err, _ := v.flight.Do(flight, func() (any, error) {
		return v.fetch(context.WithoutCancel(ctx), t, flight[len(flight)-len(key):], raw, k, gen)
	})
	if err != nil {
		return nil, err
	}
	return res.(*entry), nil
}

func (v *Verifier) fetch(ctx context.Context, t *tenant, key, raw string, k *entryKind, gen uint64) (*entry, error) {
	negative := func(r Reason, now int64) (*entry, error) {
		e := &entry{tenant: t, reason: r, until: now + int64(v.cfg.NegativeCacheTTL)}
		if v.cfg.NegativeCacheTTL > 0 {
			v.put(key, e, gen, now)
		}
		return e, nil
	}
	// A session its cookie carries is decoded first: what is wrong with
	// the cookie itself is known without Redis.
	var opened *Session
	if k.open != nil {
		start := v.cfg.Now()
		s, err := k.open(t, raw, start)
		var re *reasonError
		switch {
		case errors.As(err, &re):
			return negative(re.r, start.UnixNano())
		case err != nil:
			v.log.Warn("unreadable "+k.doc, "tenant", t.name, k.label, k.logID(key), "err", err)
			return negative(k.invalid, start.UnixNano())
		case s.User == "":
			return negative(k.anonymous, start.UnixNano())
		}
		opened = s
	}
	// The breakers of the masters the read touches: on a cluster, each
	// of its keys' (the session's and its marker's may be on two); else
	// the one.
	var bs [2]*breaker
	var rkeys []string
	n := 1
	if v.breakers.cluster == nil {
		bs[0] = &v.breakers.one
	} else {
		rkeys = k.redisKeys(t, key, opened)
		n = len(rkeys)
		for i, rk := range rkeys {
			bs[i] = v.breakers.forKey(ctx, rk)
		}
	}
	for _, b := range bs[:n] {
		if b.open(v.cfg.Now().UnixNano()) {
			return nil, errBreakerOpen
		}
	}
	if !v.acquireLoad() {
		return nil, errOverloaded
	}
	defer v.pending.Add(-1)
	data, ttl, err := k.read(v, ctx, t, key, opened)
	nowT := v.cfg.Now()
	now := nowT.UnixNano()
	switch {
	case errors.Is(err, logout.ErrNotTracked):
		// Redis answered, from a server the logout subscription is
		// not on (a failover under way): no sign of Redis being down.
	case err != nil && !isAnswer(err):
		// Only the master that failed is counted against, when the
		// read says which.
		var ke *keyError
		named := errors.As(err, &ke)
		failed := false
		for i, b := range bs[:n] {
			if rkeys == nil || !named || ke.key == rkeys[i] {
				b.failure(now)
				failed = true
			}
		}
		if !failed {
			bs[0].failure(now)
		}
	default:
		for _, b := range bs[:n] {
			b.success()
		}
	}
	switch {
	case errors.Is(err, errNotFound):
		return negative(k.notFound, now)
	case errors.Is(err, errRevoked):
		return negative(ReasonRevoked, now)
	case errors.Is(err, errStaleRevision):
		return negative(ReasonStaleRevision, now)
	case errors.Is(err, errTooLarge):
		v.log.Warn(k.doc+" over the size cap", "err", err)
		return negative(k.tooLarge, now)
	case errors.Is(err, errWrongType):
		v.log.Warn("unreadable "+k.doc, "tenant", t.name, k.label, k.logID(key), "err", err)
		return negative(k.invalid, now)
	case err != nil:
		v.metrics.redisErrors.WithLabelValues("load").Inc()
		v.log.Warn(k.label+" store unavailable", "err", err)
		return nil, err
	}
	s := opened
	if s == nil {
		s, err = k.decode(&t.decoder, data, nowT)
		if err == nil && s.User == "" && k.noUser != nil {
			err = k.noUser
		}
		if errors.Is(err, errExpired) {
			return negative(ReasonExpired, now)
		}
		if err != nil {
			v.log.Warn("unreadable "+k.doc, "tenant", t.name, k.label, k.logID(key), "err", err)
			return negative(k.invalid, now)
		}
		if s.User == "" {
			return negative(k.anonymous, now)
		}
	}
	s.userValue = []string{s.User}
	e := &entry{tenant: t, sess: s, until: now + int64(v.cfg.CacheTTL)}
	if ttl > 0 {
		kd := now + int64(ttl)
		e.keyDeadline.Store(kd)
		e.keyExpires.Store(kd)
		e.until = min(e.until, kd)
	}
	if (k.hardExpires || k.expires && v.cfg.EnforceExpires) && !s.Expires.IsZero() {
		e.until = min(e.until, s.Expires.UnixNano())
	}
	v.put(key, e, gen, now)
	return e, nil
}

// isAnswer reports whether a read's error is what Redis holds (nothing, a
// revoked, oversized or unreadable value): an answer about the session,
// not a failure of the store, so it never feeds the breaker.
func isAnswer(err error) bool {
	return errors.Is(err, errNotFound) || errors.Is(err, errRevoked) || errors.Is(err, errStaleRevision) || errors.Is(err, errTooLarge) || errors.Is(err, errWrongType)
}

// SetStaleGuard sets what StaleIfError asks before serving a stale allow:
// whether keys under prefix are tracked, so that a session deleted without
// a logout event would have been heard of. Without a guard, nothing is
// served stale.
func (v *Verifier) SetStaleGuard(tracked func(prefix string) bool) {
	v.staleGuard.Store(&tracked)
}

// errOverloaded means MaxPendingLoads reads are already waiting on Redis.
var errOverloaded = errors.New("too many Redis reads in flight")

// acquireLoad takes a slot for one Redis read, or reports the cap hit.
func (v *Verifier) acquireLoad() bool {
	if v.pending.Add(1) > int64(v.cfg.MaxPendingLoads) {
		v.pending.Add(-1)
		v.metrics.bound("pending_loads")
		return false
	}
	return true
}

// stale returns what the cache held for key when Redis cannot be read, if
// StaleIfError allows serving it: an allowed session, within StaleIfError
// of its cache TTL and never past its key's own expiry, and only while the
// logout subscription is live. The subscription being live is what makes
// it safe: every logout published since the session was cached has been
// applied (losing the subscription empties the cache), so a stale allow
// can only be a session nobody logged out.
//
// The subscription alone hears logouts that publish; a session an app
// destroys without publishing is heard only through tracking. So stale
// allows also need the guard (SetStaleGuard) to vouch that tracking is on
// and covers the key's prefix.
func (v *Verifier) stale(t *tenant, k *entryKind, key []byte, now int64) *entry {
	if v.cfg.StaleIfError <= 0 || v.bypass.Load() {
		return nil
	}
	if g := v.staleGuard.Load(); g == nil || !(*g)(k.prefix(t)) {
		return nil
	}
	e := v.cache.peek(key)
	if e == nil || e.tenant != t || e.sess == nil || now >= e.until+int64(v.cfg.StaleIfError) {
		return nil
	}
	if k.hardExpires && !e.sess.Expires.IsZero() && now >= e.sess.Expires.UnixNano() {
		return nil // never past the session's own end
	}
	if ke := e.keyExpires.Load(); ke != 0 && now >= ke {
		return nil
	}
	v.metrics.staleServed.Inc()
	return e
}

func (v *Verifier) put(sid string, e *entry, gen uint64, now int64) {
	if !v.bypass.Load() {
		v.cache.put(sid, e, gen, now)
	}
}

// maybeTouch slides the session's expiry like express-session's touch, at
// most once per TouchInterval, and only for keys that have a TTL (a store
// written without TTL has nothing to slide).
func (v *Verifier) maybeTouch(t *tenant, sid []byte, e *entry, s *Session, now int64) {
	if v.cfg.TouchInterval < 0 {
		return
	}
	ttl := s.OriginalMaxAge
	if ttl <= 0 {
		ttl = v.cfg.StoreTTL
	}
	ttl = ttl.Round(time.Second) // EXPIRE takes whole seconds
	kd := e.keyDeadline.Load()
	if kd == 0 || int64(ttl)-(kd-now) < int64(v.cfg.TouchInterval) {
		return
	}
	next := now + int64(ttl)
	if !e.keyDeadline.CompareAndSwap(kd, next) {
		return // another request is touching it
	}
	// A touch that does not happen gives the deadline back, so a later
	// request tries again.
	undo := func() { e.keyDeadline.CompareAndSwap(next, kd) }
	select {
	case v.touches <- struct{}{}:
	default:
		undo()
		return
	}
	id := string(sid)
	b := v.breakers.forKey(context.Background(), t.store.prefix+id)
	if b.open(now) {
		<-v.touches
		undo()
		return
	}
	go func() {
		defer func() { <-v.touches }()
		if err := t.store.touch(context.Background(), id, ttl); err != nil {
			undo()
			b.failure(v.cfg.Now().UnixNano())
			v.metrics.redisErrors.WithLabelValues("touch").Inc()
			v.log.Warn("sliding expiry failed", "err", err)
			return
		}
		e.keyExpires.Store(next)
		v.metrics.touches.Inc()
	}()
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

// Invalidate drops one session from the cache; it reports whether it was cached.
func (v *Verifier) Invalidate(sid string) bool {
	ok := v.cache.remove(sid)
	if ok {
		v.metrics.invalidated.Inc()
	}
	return ok
}

// InvalidateUser drops every cached session of user in tenant and reports
// how many. An empty or unknown tenant drops the user's sessions in every
// tenant: dropping too much only costs a Redis read, too little a logout.
func (v *Verifier) InvalidateUser(tenant, user string) int {
	t := v.tenants.Load().byName[tenant]
	n := v.cache.removeIf(func(e *entry) bool {
		return e.sess != nil && e.sess.User == user && (t == nil || e.tenant.name == tenant)
	})
	v.metrics.invalidated.Add(float64(n))
	return n
}

// InvalidateAll empties the cache and reports how many entries went.
func (v *Verifier) InvalidateAll() int {
	n := v.cache.removeIf(func(*entry) bool { return true })
	v.metrics.invalidated.Add(float64(n))
	return n
}

// Logout applies a logout event (logout.Handler).
func (v *Verifier) Logout(e logout.Event) {
	switch e.Kind {
	case logout.KindSession:
		v.Invalidate(e.Session)
	case logout.KindUser:
		v.InvalidateUser(e.Tenant, e.User)
	case logout.KindToken:
		v.InvalidateToken(e.Token)
	}
}

// KeysChanged drops the sessions Redis reports changed (logout.Handler):
// destroyed by an app, expired, or rewritten. nil means all of them.
func (v *Verifier) KeysChanged(keys []string) {
	if keys == nil {
		v.InvalidateAll()
		return
	}
	ts := v.tenants.Load()
	for _, k := range keys {
		if _, sid, ok := ts.tenantOfKey(k); ok {
			v.Invalidate(sid)
		} else if _, hash, ok := keyOwner(ts.byTokenPrefix, k); ok && IsTokenHash(hash) {
			v.InvalidateToken(hash)
		} else if t, user, ok := ts.revisionOwner(k); ok {
			v.InvalidateUser(t.name, user)
		} else if _, id, ok := ts.denyOwner(k); ok {
			v.Invalidate(id)
		}
	}
}

// Subscribed turns the cache off, empty, while the logout subscription is
// down, and back on, emptied once more, when it is live (logout.Handler).
func (v *Verifier) Subscribed(live bool) {
	if !live {
		v.bypass.Store(true)
		v.InvalidateAll()
		return
	}
	v.InvalidateAll()
	v.bypass.Store(false)
}

// SessionHash names a session id in logs and output without revealing it:
// the first 8 hex digits of its SHA-256.
func SessionHash(sid string) string { return shortHash(sid) }

// shortHash names a session id in logs without revealing it.
func shortHash(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return hex.EncodeToString(sum[:4])
}
