package authz

// What a front door other than ServeHTTP (package frontdoor's Server)
// needs to write an Answer as ServeHTTP writes it, and to build a Query.

// RedirectHeader carries a 401's login URL (Answer.Redirect).
const RedirectHeader = redirectHeader

// BearerChallenge is the WWW-Authenticate value of a 401 that refuses a
// bearer token (RFC 6750), sent instead of RedirectHeader.
const BearerChallenge = bearerChallenge

// Bearer reports whether r refuses a bearer token, so the answer carries
// BearerChallenge instead of a login redirect: an API client has no use
// for a login page.
func (r Reason) Bearer() bool { return r.bearer() }

// RequestHost picks the host the user asked for, which selects the tenant
// (Query.Host), from the one header Config.HostHeader names, falling back
// to Host when it is absent. A front door passes each header as sent (""
// when absent).
func (v *Verifier) RequestHost(xForwardedHost, xOriginalURL, host string) string {
	return v.requestHost(xForwardedHost, xOriginalURL, host)
}
