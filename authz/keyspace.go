package authz

import (
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

// CookieName is the name of the tenant's session cookie.
func (k Keyspace) CookieName() string { return k.t.codec.name }

// Cookie returns the value of the tenant's session cookie among a
// request's Cookie header lines, found exactly as /verify finds it.
func (k Keyspace) Cookie(lines []string) (string, bool) { return findCookie(lines, k.t.codec.name) }

// SessionID returns the session id a cookie value (as the browser sends
// it) names, checked against the tenant's secrets; a Reason ("" when
// valid) says why it names none.
func (k Keyspace) SessionID(cookieValue string) (string, Reason) {
	sg := k.t.codec.get()
	defer k.t.codec.put(sg)
	sid, reason := k.t.codec.unsign(sg, cookieValue)
	if reason != "" {
		return "", reason
	}
	return string(sid), ""
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
