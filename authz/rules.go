package authz

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Rules are per-location conditions that Nginx passes in the auth
// subrequest's query string, e.g. /verify?allow_roles=admin. Within one
// parameter any listed value matches; different parameters must all match
// (as oauth2-proxy's allowed_groups and allowed_emails combine).
type Rules struct {
	Users []string // allow_users: the identity must be one of these
	Roles []string // allow_roles: the session must hold one of these roles
	// Tenant (tenant=) names the tenant outright, instead of the host:
	// for a proxy whose host header a client could forge, and to pin a
	// location to one tenant.
	Tenant string
	// AccessToken (access_token=pass or access_token=require) hands the
	// session's access token (Config.AccessTokenPaths) back to Nginx in
	// AccessTokenHeader, for it to relay to the service. Only locations
	// that ask get it: the token is never in any other answer.
	AccessToken TokenRelay
}

// TokenRelay is what a location wants of the session's access token.
type TokenRelay uint8

// The values of the access_token= rule.
const (
	// RelayNone: the token stays in the session (no access_token=).
	RelayNone TokenRelay = iota
	// RelayPass: relayed when the session has one (access_token=pass).
	RelayPass
	// RelayRequire: relayed, and a session without one is refused with
	// ReasonNoAccessToken (access_token=require).
	RelayRequire
)

// AccessTokenHeader carries a relayed access token in authz's answer to
// Nginx, which sends it to the service (nginx/authz/token-*.conf). It is a
// header of the auth subrequest's answer only: Nginx never passes those to
// the browser.
const AccessTokenHeader = "X-Auth-Access-Token"

// ParseRules parses a verify query string. Unknown parameters are an error:
// a typo such as allow_role=admin must not silently allow everyone.
func ParseRules(rawQuery string) (*Rules, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("verify query %q: %w", rawQuery, err)
	}
	r := &Rules{}
	for k, vs := range q {
		var dst *[]string
		switch k {
		case "tenant":
			if len(vs) != 1 || !validTenantName(vs[0]) {
				return nil, fmt.Errorf("verify query %q: tenant= takes one tenant name", rawQuery)
			}
			r.Tenant = vs[0]
			continue
		case "access_token":
			switch {
			case len(vs) == 1 && vs[0] == "pass":
				r.AccessToken = RelayPass
			case len(vs) == 1 && vs[0] == "require":
				r.AccessToken = RelayRequire
			default:
				return nil, fmt.Errorf("verify query %q: access_token= takes pass or require", rawQuery)
			}
			continue
		case "allow_users":
			dst = &r.Users
		case "allow_roles":
			dst = &r.Roles
		default:
			return nil, fmt.Errorf("verify query %q: unknown rule %q (want allow_users, allow_roles, tenant or access_token)", rawQuery, k)
		}
		for _, v := range vs {
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					*dst = append(*dst, p)
				}
			}
		}
		if len(*dst) == 0 {
			// allow_users= with nothing listed would deny everyone; almost
			// certainly an unset template variable.
			return nil, fmt.Errorf("verify query %q: rule %q lists nobody", rawQuery, k)
		}
	}
	return r, nil
}

// check returns "" if s satisfies r, else the reason it does not.
func (r *Rules) check(s *Session) Reason {
	if len(r.Users) > 0 && !slices.Contains(r.Users, s.User) {
		return ReasonUserNotAllowed
	}
	if len(r.Roles) > 0 && !slices.ContainsFunc(s.Roles, func(role string) bool {
		return slices.Contains(r.Roles, role)
	}) {
		return ReasonRoleNotAllowed
	}
	if r.AccessToken == RelayRequire && s.accessToken == "" {
		return ReasonNoAccessToken
	}
	return ""
}

// ruleCache memoises parsed rules by query string. Queries come from the
// Nginx config, so there are few; the bound keeps a caller that can reach
// authz directly from growing it.
type ruleCache struct {
	mu sync.RWMutex
	m  map[string]ruleResult
}

type ruleResult struct {
	rules *Rules
	err   error
}

const maxRuleCache = 1024

// get returns the rules for rawQuery; fresh reports a first parse, so an
// error is logged once rather than on every request.
func (c *ruleCache) get(rawQuery string) (r *Rules, err error, fresh bool) {
	c.mu.RLock()
	res, ok := c.m[rawQuery]
	c.mu.RUnlock()
	if ok {
		return res.rules, res.err, false
	}
	r, err = ParseRules(rawQuery)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]ruleResult)
	}
	if len(c.m) < maxRuleCache {
		// Clone: a substring of a whole request must not stay alive as a key.
		c.m[strings.Clone(rawQuery)] = ruleResult{r, err}
	}
	c.mu.Unlock()
	return r, err, true
}
