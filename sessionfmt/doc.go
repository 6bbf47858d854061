// Package sessionfmt reads the session cookies of the Node session libraries
// authz serves besides express-session: client-sessions 0.8 (the whole
// session encrypted and signed in the cookie), cookie-session 2.x (base64
// JSON in one cookie, a keygrip signature in a second) and @fastify/session
// 11.x (a signed session id; the session lives in Redis through
// connect-redis).
//
// Each format is one type built once from its options (NewClientSessions,
// NewCookieSession, NewFastifySession) and safe for concurrent use. Lookup
// finds the format's cookie in the request's Cookie header lines exactly as
// the format's own Node cookie parser does, and Parse verifies it: the
// signature in constant time before anything else is read, then the content.
// Parse writes what it decodes into a caller-supplied buffer, so a caller
// that reuses buffers allocates nothing.
//
// The codecs are stricter than Node where Node is lenient about bytes the
// signature does not cover (parseInt on client-sessions' timestamps, base64
// decoders that skip junk): sessionfmt refuses such cookies, so no changed
// byte of a valid cookie is ever accepted. testdata/vectors.json, made by
// testdata/gen/gen.js with the real npm packages, marks each such case.
//
// Every refusal is one of the Err* values below, each of which maps to one
// of authz's reasons (see Reason in the tests and docs/formats.md).
package sessionfmt

import "errors"

// The errors Parse returns. They are sentinels so a refusal costs no
// allocation; callers compare with errors.Is or ==.
var (
	// ErrTooLarge: the cookie is longer than the configured bound
	// (authz reason cookie_too_large).
	ErrTooLarge = errors.New("sessionfmt: cookie too large")
	// ErrMalformed: the cookie does not have the format's shape
	// (malformed_cookie).
	ErrMalformed = errors.New("sessionfmt: malformed cookie")
	// ErrBadSignature: the signature or MAC does not verify with any key,
	// or is missing (bad_signature).
	ErrBadSignature = errors.New("sessionfmt: bad signature")
	// ErrExpired: the cookie's own expiry has passed (expired).
	ErrExpired = errors.New("sessionfmt: session expired")
	// ErrInvalidContent: the cookie is authentic but its content is not a
	// session: not a JSON object, another cookie's content, bad padding, or
	// a revision that is not an integer (invalid_session).
	ErrInvalidContent = errors.New("sessionfmt: invalid session content")
	// ErrInvalidSessionID: a signed session id outside the alphabet and
	// length authz accepts as a Redis key (invalid_session_id).
	ErrInvalidSessionID = errors.New("sessionfmt: invalid session id")
)

// DefaultMaxCookieBytes bounds a cookie value when the options leave the
// bound at zero: what browsers keep for one cookie, and authz's
// --max-cookie-bytes default.
const DefaultMaxCookieBytes = 4096
