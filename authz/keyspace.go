package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/redis/go-redis/v9"
)

// This file is the surface the write side (packages signoff and tokens)
// reads the Verifier through: the tenant table the read path routes with,
// each tenant's key layout and decoder, the Redis client and its
// configuration. Nothing here is used on the verify path.

// Keyspace is one tenant as the write side sees it: where its sessions,
// their logout markers and its API tokens live in Redis, how its cookies
// and stored values read. It is the tenant of the table in use when it was
// looked up (see SetTenants): after a reload, a Keyspace looked up before
// it finishes with the old definition, as a request in flight does.
type Keyspace struct{ t *tenant }

// Keyspace returns the tenant called name from the tenant table the read
// path routes with; "" is the only tenant of a deployment without a tenant
// file.
func (v *Verifier) Keyspace(name string) (Keyspace, error) {
	t, err := v.tenant(name)
	if err != nil {
		return Keyspace{}, err
	}
	return Keyspace{t}, nil
}

// KeyspaceOf returns the tenant serving r's host, read as /verify reads it
// (Config.HostHeader). false: no tenant serves it (logged, at most once a
// second, like a verify for it).
func (v *Verifier) KeyspaceOf(r *http.Request) (Keyspace, bool) {
	host := v.requestHost(r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Original-URL"), r.Host)
	t := v.tenants.Load().lookup(host)
	if t == nil {
		v.unknownHost(host)
		return Keyspace{}, false
	}
	return Keyspace{t}, true
}

// Name is the tenant's name ("" without a tenant file): what logout events
// and the CLI call it.
func (k Keyspace) Name() string { return k.t.name }

// ID is unique per tenant and per build of the tenant table: a tenant
// reloaded with a new definition has a new one.
func (k Keyspace) ID() string { return k.t.id }

// SessionPrefix is the Redis prefix of the tenant's sessions
// (connect-redis's prefix): a session's key is SessionPrefix + id.
func (k Keyspace) SessionPrefix() string { return k.t.store.prefix }

// RevokedKey is the key of the logout marker of session sid, which the
// read path checks with every read of the session.
func (k Keyspace) RevokedKey(sid string) string { return k.t.store.revokedKey(sid) }

// TokenPrefix is the Redis prefix of the tenant's API tokens: a token's
// key is TokenPrefix + TokenHash(token).
func (k Keyspace) TokenPrefix() string { return k.t.tokenPrefix }

// Format is the tenant's session format.
func (k Keyspace) Format() Format { return k.t.format.format() }

// CookieName is the name of the tenant's session cookie.
func (k Keyspace) CookieName() string { return k.t.cookieName() }

// CookieNames are the cookies a logout clears: the session cookie, and
// cookie-session's signature cookie.
func (k Keyspace) CookieNames() []string { return k.t.clearCookies() }

// RequestSession returns what the session cookie among a request's Cookie
// header lines names, found and checked exactly as /verify does: the
// session id, or for a format whose cookie carries its session, the cookie
// id (CookieID) with the cookie's value in raw. A Reason ("" when valid)
// says why it names none.
func (k Keyspace) RequestSession(lines []string) (id, raw string, r Reason) {
	sc := scratch{buf: make([]byte, 0, maxCookieScratch)}
	defer sc.release()
	key, raw, r := k.t.format.cookie(&sc, lines)
	return string(key), raw, r
}

// maxCookieScratch bounds what RequestSession reads; /verify's bound
// (Config.MaxCookieBytes) still applies inside each format.
const maxCookieScratch = 1 << 16

// OpenCookie decodes a cookie of a format that carries its session, as a
// cache miss of /verify does: MAC, expiry, identity and revision. raw is
// the cookie's value as RequestSession or ParseCookieRef returned it
// (cookie-session's signature, a second cookie, is checked there). It
// reads nothing from Redis.
func (k Keyspace) OpenCookie(raw string) (*Session, error) {
	_, s, err := openCookie(k.t, raw)
	return s, err
}

// ParseCookieRef reads what an operator pastes for a cookie that carries
// its session: a client-sessions cookie's value, or for cookie-session
// both cookies as the browser's Cookie header holds them
// ("session=…; session.sig=…"), since the value alone is signed by nothing.
// It returns the cookie's id and value once the cookie verifies: a forged
// one names nothing.
func (k Keyspace) ParseCookieRef(ref string) (id, raw string, err error) {
	cf, ok := k.t.format.(*cookieFormat)
	if !ok {
		return "", "", fmt.Errorf("%s sessions are in Redis, not in their cookie", k.t.format.format())
	}
	if cf.ck != nil {
		var r Reason
		if id, raw, r = k.RequestSession([]string{ref}); r != "" {
			return "", "", fmt.Errorf("cookie-session cookie: %s (pass both cookies as the Cookie header has them: '%s=…; %s=…')", r, cf.ck.Name(), cf.ck.SigName())
		}
	} else {
		id, raw = CookieID(ref), ref
	}
	if _, _, err := openCookie(k.t, raw); err != nil {
		return "", "", err
	}
	return id, raw, nil
}

// LiveCookie opens value as OpenCookie does and reads what Redis holds
// against it as a cache miss of /verify does. ended is true when the
// cookie is denied or its revision is not its user's current one: a
// cookie that is over names nobody to log out.
func (k Keyspace) LiveCookie(ctx context.Context, value string) (s *Session, ended bool, err error) {
	s, err = k.OpenCookie(value)
	if err != nil {
		return nil, false, err
	}
	err = k.t.format.(*cookieFormat).read(ctx, k.t, CookieID(value), s)
	switch {
	case errors.Is(err, errRevoked), errors.Is(err, errStaleRevision):
		return nil, true, nil
	case err != nil:
		return nil, false, err
	}
	return s, false, nil
}

// RevisionKey is where user's current revision lives, for a format whose
// cookie carries its session; "" when the tenant has no revision path.
func (k Keyspace) RevisionKey(user string) string {
	if cf, ok := k.t.format.(*cookieFormat); !ok || cf.revisionPath == nil {
		return ""
	}
	return k.t.revisionKey(user)
}

// Decode reads a stored session or token document with the tenant's user,
// roles and header paths, as a verify would.
func (k Keyspace) Decode(data []byte) (*Session, error) { return k.t.decoder.decode(data) }

// Config returns the configuration v runs with, defaults filled in: the
// write side's Redis timeouts, size caps, store TTL, topology and replica
// waits are the read path's.
func (v *Verifier) Config() Config { return v.cfg }

// Client returns the Redis client v reads sessions through.
func (v *Verifier) Client() redis.UniversalClient { return v.rdb }
