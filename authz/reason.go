package authz

import "net/http"

// Reason says why a verify request got its answer. The set is closed, so it
// is safe as a metric label.
type Reason string

// Reasons, grouped by the status they answer with.
const (
	ReasonOK Reason = "ok" // 200

	ReasonNoCookie         Reason = "no_cookie"          // 401
	ReasonCookieTooLarge   Reason = "cookie_too_large"   // 401
	ReasonMalformedCookie  Reason = "malformed_cookie"   // 401
	ReasonBadSignature     Reason = "bad_signature"      // 401
	ReasonInvalidSessionID Reason = "invalid_session_id" // 401
	ReasonNotFound         Reason = "not_found"          // 401
	ReasonAnonymous        Reason = "anonymous"          // 401
	ReasonExpired          Reason = "expired"            // 401
	ReasonInvalidSession   Reason = "invalid_session"    // 401
	ReasonSessionTooLarge  Reason = "session_too_large"  // 401
	ReasonRevoked          Reason = "revoked"            // 401
	// ReasonStaleRevision: the session's revision (--revision-path) is
	// not its user's current one: a user-wide logout moved it on.
	ReasonStaleRevision Reason = "stale_revision"  // 401
	ReasonBadToken      Reason = "bad_token"       // 401
	ReasonTokenNotFound Reason = "token_not_found" // 401
	ReasonInvalidToken  Reason = "invalid_token"   // 401

	ReasonUserNotAllowed Reason = "user_not_allowed" // 403
	ReasonRoleNotAllowed Reason = "role_not_allowed" // 403
	ReasonUnknownHost    Reason = "unknown_host"     // 403: no tenant serves the host
	// ReasonNoAccessToken: the location requires an access token to relay
	// (access_token=require) and the session holds none. 403, not a login
	// redirect: signing in again need not bring one, and must not loop.
	ReasonNoAccessToken Reason = "no_access_token" // 403

	ReasonStoreUnavailable Reason = "store_unavailable" // 503
	ReasonBadRule          Reason = "bad_rule"          // 500
)

var allReasons = []Reason{
	ReasonOK, ReasonNoCookie, ReasonCookieTooLarge, ReasonMalformedCookie,
	ReasonBadSignature, ReasonInvalidSessionID, ReasonNotFound, ReasonAnonymous,
	ReasonExpired, ReasonInvalidSession, ReasonSessionTooLarge, ReasonRevoked, ReasonStaleRevision,
	ReasonBadToken, ReasonTokenNotFound, ReasonInvalidToken,
	ReasonUserNotAllowed, ReasonRoleNotAllowed, ReasonUnknownHost, ReasonNoAccessToken, ReasonStoreUnavailable, ReasonBadRule,
}

// Status is the HTTP status a verify request with this reason answers with.
// Nginx's auth_request only understands 2xx, 401 and 403; anything else
// becomes a 500, which is what a misconfigured rule deserves and what the
// Nginx config maps to an "unavailable" page for 503.
func (r Reason) Status() int {
	switch r {
	case ReasonOK:
		return http.StatusOK
	case ReasonUserNotAllowed, ReasonRoleNotAllowed, ReasonUnknownHost, ReasonNoAccessToken:
		// An unknown host is refused, not sent to a login page: no
		// tenant's login could help, and 403 is a status Nginx's
		// auth_request passes on rather than turning into a 500.
		return http.StatusForbidden
	case ReasonStoreUnavailable:
		return http.StatusServiceUnavailable
	case ReasonBadRule:
		return http.StatusInternalServerError
	}
	return http.StatusUnauthorized
}

// Outcome is the coarse class of r: allowed, unauthenticated, forbidden,
// unavailable or misconfigured.
func (r Reason) Outcome() string {
	switch r.Status() {
	case http.StatusOK:
		return "allowed"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusServiceUnavailable:
		return "unavailable"
	case http.StatusInternalServerError:
		return "misconfigured"
	}
	return "unauthenticated"
}
