// Package authz decides Nginx auth_request subrequests against sessions that
// express-session and connect-redis keep in Redis.
//
// The request path reads top to bottom: cookie.go finds and verifies the
// signed cookie, cache.go and store.go find the session, session.go decodes
// it, rules.go applies the location's rules and verify.go answers.
//
// It never ends a session or writes a token: the write side (packages
// signoff and tokens) does, reading the tenant table and key layout
// through keyspace.go. authz imports neither.
package authz
