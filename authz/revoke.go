package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Revocation is how a logout through authz (package signoff writes it)
// ends sessions so that no instance, and no app, can bring them back:
//
//  1. a marker RevokedPrefix+KeyPrefix+sid is set, living as long as the
//     session could (its remaining TTL, its cookie's maxAge or StoreTTL,
//     whichever is longest; forever if the key had no TTL);
//  2. the session key is deleted, as express-session's destroy does;
//  3. the caller publishes the logout event, and every instance drops its
//     cached copy.
//
// The marker is what makes the logout stick: an Express request that loaded
// the session before the logout and saves it afterwards writes the key
// again, but authz checks the marker in the same round trip as the session
// and refuses it. Sessions created later have new ids and no marker.

// endedAgain counts and logs a session store.endAgain ended once more.
func (v *Verifier) endedAgain(err error) {
	if err != nil {
		v.metrics.endedAgain.WithLabelValues("error").Inc()
		v.metrics.redisErrors.WithLabelValues("load").Inc()
		v.rateLimited(func() {
			v.log.Warn("a logged-out session saved back by an app could not be ended again; authz still refuses it", "err", err)
		})
		return
	}
	v.metrics.endedAgain.WithLabelValues("ok").Inc()
}

// ParseSessionRef turns what an operator pastes (a session id, or a cookie
// value, raw or percent-encoded) into a session id. A cookie value must be
// signed by one of the tenant's secrets. tenant is "" without a tenant file.
func (v *Verifier) ParseSessionRef(tenant, ref string) (string, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return "", err
	}
	if f := t.format.format(); f == FormatExpressSession && len(ref) > 2 && (ref[:2] == "s:" || len(ref) > 4 && (ref[:4] == "s%3A" || ref[:4] == "s%3a")) ||
		f == FormatFastifySession && strings.Contains(ref, ".") {
		sid, _, reason := v.requestSession(t, []string{t.cookieName() + "=" + ref})
		if reason != "" {
			return "", fmt.Errorf("cookie value: %s", reason)
		}
		return sid, nil
	}
	if !validSID([]byte(ref)) {
		return "", fmt.Errorf("%q is neither a session id ([A-Za-z0-9_-], %d-%d characters) nor a signed cookie value (s:…)", ref, minSIDLen, maxSIDLen)
	}
	return ref, nil
}

// Session loads and decodes one session straight from Redis (no cache). It
// returns errNotFound-wrapping errors for missing or revoked sessions.
func (v *Verifier) Session(ctx context.Context, tenant, sid string) (*Session, time.Duration, error) {
	t, err := v.tenant(tenant)
	if err != nil {
		return nil, 0, err
	}
	data, ttl, err := t.store.load(ctx, sid)
	if errors.Is(err, errNotFound) || errors.Is(err, errRevoked) {
		return nil, 0, fmt.Errorf("session %s: %w", shortHash(sid), err)
	}
	if err != nil {
		return nil, 0, err
	}
	s, err := t.decoder.decode(data)
	if err != nil {
		return nil, 0, fmt.Errorf("session %s: %w", shortHash(sid), err)
	}
	return s, ttl, nil
}

// IsNotFound reports whether err means the session does not exist or was
// revoked.
func IsNotFound(err error) bool { return errors.Is(err, errNotFound) || errors.Is(err, errRevoked) }
