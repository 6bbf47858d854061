// Package authz decides Nginx auth_request subrequests against sessions that
// express-session and connect-redis keep in Redis.
//
// The request path reads top to bottom: cookie.go finds and verifies the
// signed cookie, cache.go and store.go find the session, session.go decodes
// it, rules.go applies the location's rules and verify.go answers.
package authz
