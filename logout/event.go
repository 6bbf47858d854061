// Package logout carries single sign-off: a logout event, its publisher and a
// subscriber that any Go service can embed to drop what its own cache holds
// for a session or a user the moment they log out anywhere.
//
// Events travel over Redis pub/sub, which is at-most-once: a subscriber that
// loses its connection misses what was published meanwhile. The Subscriber
// therefore tells its Handler whenever it cannot vouch for what it heard
// (Subscribed(false)), and the Handler must then drop and stop caching
// everything until Subscribed(true). With Redis server-assisted invalidation
// (CLIENT TRACKING, see Tracking) the same subscription also hears about
// sessions deleted, expired or rewritten without any event.
//
// This package does not import authz: a service that only wants to keep its
// cache honest needs nothing else.
package logout

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the event format this package writes and reads.
const Version = 1

// DefaultChannel is the pub/sub channel events travel on.
const DefaultChannel = "authz:logout"

// Kind says what an event ends.
type Kind string

// The kinds of logout.
const (
	// KindSession ends one session, named by its id.
	KindSession Kind = "session"
	// KindUser ends every session of one user ("log out everywhere").
	KindUser Kind = "user"
	// KindToken revokes one API bearer token, named by the hex SHA-256 of
	// the token: the token itself never travels.
	KindToken Kind = "token"
)

// Event is one logout, as JSON on the channel:
//
//	{"v":1,"kind":"session","session":"<sid>","time":"2026-11-21T23:00:00.123Z","origin":"authz-cli"}
//	{"v":1,"kind":"user","user":"42","tenant":"acme","time":"…","origin":"express-login"}
//	{"v":1,"kind":"token","token":"<64 hex digits: sha256 of the token>","time":"…","origin":"authz-cli"}
type Event struct {
	V       int       `json:"v"`
	Kind    Kind      `json:"kind"`
	Tenant  string    `json:"tenant,omitempty"`  // empty: the default tenant
	Session string    `json:"session,omitempty"` // session id (not the cookie) for KindSession
	User    string    `json:"user,omitempty"`    // user id for KindUser, as authz's X-Auth-User shows it
	Token   string    `json:"token,omitempty"`   // hex SHA-256 of the token for KindToken, never the token
	Time    time.Time `json:"time"`              // when the logout happened; drives the propagation metric
	Origin  string    `json:"origin,omitempty"`  // who published: free text for logs
}

// Errors Parse reports, so subscribers can count bad events by cause.
var (
	ErrNotJSON     = errors.New("not a JSON event")
	ErrVersion     = errors.New("unknown event version")
	ErrKind        = errors.New("unknown event kind")
	ErrMissingID   = errors.New("event names no session, user or token")
	ErrFieldTooBig = errors.New("event field too long")
)

// maxField bounds ids so a hostile publisher cannot make subscribers hold
// huge strings.
const maxField = 512

// Parse decodes and checks an event.
func Parse(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	return e, e.Validate()
}

// Validate checks that e is an event a subscriber can apply.
func (e Event) Validate() error {
	if e.V != Version {
		return fmt.Errorf("%w: %d", ErrVersion, e.V)
	}
	for _, f := range []string{e.Session, e.User, e.Token, e.Tenant, e.Origin} {
		if len(f) > maxField {
			return ErrFieldTooBig
		}
	}
	switch e.Kind {
	case KindSession:
		if e.Session == "" {
			return fmt.Errorf("%w: session event without session", ErrMissingID)
		}
	case KindUser:
		if e.User == "" {
			return fmt.Errorf("%w: user event without user", ErrMissingID)
		}
	case KindToken:
		// Only a hash is accepted: a token pasted where its hash belongs
		// must go no further, into any subscriber's cache or log.
		if !isTokenHash(e.Token) {
			return fmt.Errorf("%w: token event without a token hash (64 lower-case hex digits)", ErrMissingID)
		}
	default:
		return fmt.Errorf("%w: %q", ErrKind, e.Kind)
	}
	return nil
}

// isTokenHash reports whether s is a hex SHA-256 in lower case, as token
// events name tokens.
func isTokenHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
