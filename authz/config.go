package authz

import (
	"errors"
	"fmt"
	"strings"
	"time"
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
