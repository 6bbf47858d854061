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
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/authz/authz/internal/jsnum"
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
	User    string    `json:"user,omitempty"`    // user id for KindUser, as X-Auth-User shows it: Parse writes a JSON number as JavaScript's String() does
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

// Parse decodes and checks an event. See Decode for what it accepts.
func Parse(b []byte) (Event, error) {
	e, _, err := Decode(b)
	return e, err
}

// Decode decodes and checks an event, and names the optional fields it
// could not read and left out (Ignored: "time", "origin").
//
// It takes events as producers write them naturally, because an event
// dropped is a logout not applied: strict only where applying the event
// needs it. v, kind and the id the kind names must be right; a user id or
// tenant written as a JSON number (JSON.stringify of a numeric id) is read
// as its literal text; time may be an RFC 3339 string, a number of
// milliseconds since the epoch (Date.now()), or what JavaScript's
// Date.prototype.toString or toUTCString writes; an unreadable time or
// origin is left out and named in ignored, the event still applies.
func Decode(b []byte) (e Event, ignored []string, err error) {
	var w struct {
		V       int             `json:"v"`
		Kind    Kind            `json:"kind"`
		Tenant  json.RawMessage `json:"tenant"`
		Session string          `json:"session"`
		User    json.RawMessage `json:"user"`
		Token   string          `json:"token"`
		Time    json.RawMessage `json:"time"`
		Origin  json.RawMessage `json:"origin"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	e = Event{V: w.V, Kind: w.Kind, Session: w.Session, Token: w.Token}
	if e.User, err = idText(w.User, "user", true); err != nil {
		return Event{}, nil, err
	}
	if e.Tenant, err = idText(w.Tenant, "tenant", false); err != nil {
		return Event{}, nil, err
	}
	if t, ok := parseTime(w.Time); ok {
		e.Time = t
	} else {
		ignored = append(ignored, "time")
	}
	if o, ok := optionalString(w.Origin); ok {
		e.Origin = o
	} else {
		ignored = append(ignored, "origin")
	}
	return e, ignored, e.Validate()
}

// idText reads an id that must be a string or a number; absent or null is
// "". With asJS, a number is written as JavaScript's String() does, as
// authz writes a numeric user id read from a session (1e2 and 100.0 are
// "100", 12345678901234567891 is "12345678901234567000"), so that the event
// names the X-Auth-User the sessions carry; without it, the literal text.
func idText(raw json.RawMessage, field string, asJS bool) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNotJSON, field, err)
		}
		return s, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if !asJS {
			return string(raw), nil // json.Unmarshal has checked the number
		}
		s, ok := jsnum.Format(json.Number(raw))
		if !ok {
			return "", fmt.Errorf("%w: %s %s is not a finite number", ErrNotJSON, field, raw)
		}
		return s, nil
	}
	return "", fmt.Errorf("%w: %s is neither a string nor a number", ErrNotJSON, field)
}

// optionalString reads a free-text field; ok is false when it is present
// but not a string.
func optionalString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", true
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// timeLayouts are the strings producers write for a time: RFC 3339
// (Date.prototype.toISOString, Go), JavaScript's Date.prototype.toString
// (its zone name in parentheses is cut first) and toUTCString.
var timeLayouts = []string{
	time.RFC3339Nano,
	"Mon Jan 02 2006 15:04:05 GMT-0700",
	time.RFC1123,
	"2006-01-02T15:04:05.999999999", // an ISO time without zone: UTC, as Date.parse reads a date-only form
}

// parseTime reads an event's time; ok is false when it is present but
// unreadable (the event still applies without it).
func parseTime(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, true
	}
	if raw[0] != '"' {
		// Date.now(): milliseconds since the epoch, maybe with a fraction
		// (performance.timeOrigin + performance.now()).
		ms, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || ms <= 0 || ms > 1e15 {
			return time.Time{}, false
		}
		// Whole milliseconds and the fraction apart: ms as a Duration
		// (nanoseconds) overflows past 2262 (ms > 9.2e12), which the
		// bound above allows.
		whole := math.Floor(ms)
		return time.UnixMilli(int64(whole)).Add(time.Duration((ms - whole) * float64(time.Millisecond))), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, false
	}
	if i := strings.Index(s, " ("); i > 0 {
		s = s[:i] // "… GMT+0100 (Central European Standard Time)"
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
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
