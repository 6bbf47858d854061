// Package authz decides Nginx auth_request subrequests: whether the cookie
// a request carries names a live session, whose it is, and whether the
// location's rules let it in. It reads the sessions of express-session,
// client-sessions, cookie-session and @fastify/session (docs/formats.md).
//
// The read path, in the order a request takes it:
//
//	verify.go      Decide: the tenant by host (tenant.go), the location's
//	               rules (rules.go), then decide; the answer (reason.go)
//	format.go      the tenant's session format, the one seam that differs
//	               by format: it finds and checks the cookie (cookie.go for
//	               express-session, package sessionfmt for the others) and
//	               says how a cache miss reads the session
//	load.go        the cache (cache.go), one shared Redis read per miss
//	               (store.go), the circuit (breaker.go), negative entries,
//	               stale allows, sliding expiry
//	session.go     a stored session's JSON into a Session: identity, roles,
//	               identity headers
//	revision.go    what ends a session its cookie carries: the user's
//	               revision, a deny entry for the cookie
//	invalidate.go  logout events and Redis tracking drop cache entries
//
// config.go, topology.go and metrics.go are its settings and series;
// token.go reads API tokens through the same load path.
//
// It never ends a session or writes a token: the write side (packages
// signoff and tokens) does, reading the tenant table and key layout
// through keyspace.go. authz imports neither. The HTTP server Nginx talks
// to is package frontdoor's, over Decide.
package authz
