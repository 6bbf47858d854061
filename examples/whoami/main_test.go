package main

import (
	"encoding/json"
	"testing"
	"time"
)

func TestLocalPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/":              true,
		"/orders?page=2": true,
		"/a//b":          true,
		"":               false,
		"orders":         false,
		"//evil.com":     false,
		`/\evil.com`:     false,
		"/\t/evil.com":   false,
		"/\n/evil.com":   false,
		"/ /evil.com":    false,
		"https://evil":   false,
	} {
		if got := localPath(p); got != want {
			t.Errorf("localPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestSessionJSONIsWhatAuthzReads(t *testing.T) {
	b, err := sessionJSON("alice", []string{"user", "admin"}, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Cookie struct {
			OriginalMaxAge int64
			Expires        string
		}
		Passport struct {
			User struct {
				ID    string
				Roles []string
			}
		}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Passport.User.ID != "alice" || len(s.Passport.User.Roles) != 2 {
		t.Errorf("passport.user = %+v", s.Passport.User)
	}
	if s.Cookie.Expires != "2026-01-03T03:04:05.000Z" || s.Cookie.OriginalMaxAge != 86400000 {
		t.Errorf("cookie = %+v", s.Cookie)
	}
}
