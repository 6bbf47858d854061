package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/sessionfmt"
)

// TestEncodeClientSessionsMatchesNode ties the load test's cookie to the real
// npm client-sessions 0.8: for each cookie the library made with a secret and
// its default algorithms (sessionfmt/testdata/vectors.json), encoding the
// same content with the same IV and times gives exactly the same value.
func TestEncodeClientSessionsMatchesNode(t *testing.T) {
	raw, err := os.ReadFile("../../sessionfmt/testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs struct {
		ClientSessions []struct {
			Name   string
			Want   string
			Cookie string
			Config map[string]any
		} `json:"client_sessions"`
	}
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vs.ClientSessions {
		secret, _ := v.Config["secret"].(string)
		name, _ := v.Config["cookieName"].(string)
		if v.Want != "ok" || secret == "" || len(v.Config) != 2 {
			continue // other algorithms or keys, or not a valid cookie
		}
		t.Run(v.Name, func(t *testing.T) {
			c, err := sessionfmt.NewClientSessions(sessionfmt.ClientSessionsOptions{CookieName: name, Secret: secret})
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.Parse(nil, v.Cookie, time.Time{})
			if err != nil {
				t.Fatalf("the library's cookie does not parse: %v", err)
			}
			parts := strings.Split(v.Cookie, ".")
			iv, err := base64.RawURLEncoding.DecodeString(parts[0])
			if err != nil {
				t.Fatal(err)
			}
			createdAt, _ := strconv.ParseInt(parts[2], 10, 64)
			duration, _ := strconv.ParseInt(parts[3], 10, 64)
			got, err := encodeClientSessions(secret, name, string(s.Content), iv, createdAt, duration)
			if err != nil {
				t.Fatal(err)
			}
			if got != v.Cookie {
				t.Errorf("encoded\n%s\nthe library wrote\n%s", got, v.Cookie)
			}
		})
		n++
	}
	if n < 3 {
		t.Fatalf("only %d vectors with a secret and default algorithms; want at least 3", n)
	}
}

// TestCSCookie checks the cookie the load script sends in scenario (g):
// authz's reader accepts it with the identity inside, refuses it once any
// byte changes, and sees it expire after its duration.
func TestCSCookie(t *testing.T) {
	const secret, name, content = "loadtest-secret", "session", `{"passport":{"user":"alice"},"rev":0}`
	now := time.Now()
	v, err := csCookie(secret, name, content, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sessionfmt.NewClientSessions(sessionfmt.ClientSessionsOptions{CookieName: name, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Parse(nil, v, now)
	if err != nil {
		t.Fatalf("Parse(%q): %v", v, err)
	}
	if string(s.Content) != content {
		t.Errorf("content %s, want %s", s.Content, content)
	}
	if s.CreatedAt.UnixMilli() != now.UnixMilli() || s.Duration != 24*time.Hour {
		t.Errorf("createdAt %v duration %v, want %v and 24h", s.CreatedAt, s.Duration, now)
	}
	if _, err := c.Parse(nil, v, now.Add(24*time.Hour+time.Millisecond)); !errors.Is(err, sessionfmt.ErrExpired) {
		t.Errorf("a day and a millisecond later: %v, want ErrExpired", err)
	}
	other, err := sessionfmt.NewClientSessions(sessionfmt.ClientSessionsOptions{CookieName: name, Secret: secret + "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Parse(nil, v, now); err == nil {
		t.Error("accepted under another secret")
	}
	for i := 0; i < len(v); i++ {
		b := []byte(v)
		b[i] ^= 1
		if _, err := c.Parse(nil, string(b), now); err == nil {
			t.Fatalf("accepted with byte %d changed: %s", i, b)
		}
	}
	w, err := csCookie(secret, name, content, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if w == v {
		t.Error("two cookies with the same IV: the IV must be random")
	}
}

func TestCSCookieRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"", `{}`},
		{"a=b", `{}`},
		{"session", `42`},
		{"session", `{"a":`},
	} {
		if v, err := csCookie("s", tc.name, tc.content, time.Now(), time.Hour); err == nil {
			t.Errorf("csCookie(name %q, content %q) = %q, want an error", tc.name, tc.content, v)
		}
	}
}
