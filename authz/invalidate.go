package authz

import (
	"github.com/authz/authz/logout"
)

// Invalidate drops one session from the cache; it reports whether it was cached.
func (v *Verifier) Invalidate(sid string) bool {
	ok := v.cache.remove(sid)
	if ok {
		v.metrics.invalidated.Inc()
	}
	return ok
}

// InvalidateUser drops every cached session of user in tenant and reports
// how many. An empty or unknown tenant drops the user's sessions in every
// tenant: dropping too much only costs a Redis read, too little a logout.
func (v *Verifier) InvalidateUser(tenant, user string) int {
	t := v.tenants.Load().byName[tenant]
	n := v.cache.removeIf(func(e *entry) bool {
		return e.sess != nil && e.sess.User == user && (t == nil || e.tenant.name == tenant)
	})
	v.metrics.invalidated.Add(float64(n))
	return n
}

// InvalidateAll empties the cache and reports how many entries went.
func (v *Verifier) InvalidateAll() int {
	n := v.cache.removeIf(func(*entry) bool { return true })
	v.metrics.invalidated.Add(float64(n))
	return n
}

// Logout applies a logout event (logout.Handler).
func (v *Verifier) Logout(e logout.Event) {
	switch e.Kind {
	case logout.KindSession:
		v.Invalidate(e.Session)
		v.watchRevived(e.Tenant, e.Session)
	case logout.KindUser:
		v.InvalidateUser(e.Tenant, e.User)
	case logout.KindToken:
		v.InvalidateToken(e.Token)
	}
}

// KeysChanged drops the sessions Redis reports changed (logout.Handler):
// destroyed by an app, expired, or rewritten. nil means all of them.
func (v *Verifier) KeysChanged(keys []string) {
	if keys == nil {
		v.InvalidateAll()
		v.rearmRevived()
		return
	}
	ts := v.tenants.Load()
	for _, k := range keys {
		if _, sid, ok := ts.tenantOfKey(k); ok {
			v.Invalidate(sid)
			v.keyWritten(k)
		} else if _, hash, ok := keyOwner(ts.byTokenPrefix, k); ok && IsTokenHash(hash) {
			v.InvalidateToken(hash)
		} else if t, user, ok := ts.revisionOwner(k); ok {
			v.InvalidateUser(t.name, user)
		} else if _, id, ok := ts.denyOwner(k); ok {
			v.Invalidate(id)
		}
	}
}

// Subscribed turns the cache off, empty, while the logout subscription is
// down, and back on, emptied once more, when it is live (logout.Handler).
func (v *Verifier) Subscribed(live bool) {
	if !live {
		v.bypass.Store(true)
		v.InvalidateAll()
		return
	}
	v.InvalidateAll()
	v.bypass.Store(false)
	v.rearmRevived()
}
