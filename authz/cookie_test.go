package authz

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// vectors were computed with the real cookie-signature package, as used by
// express-session (see testdata/express-session-vectors.json's "about").
type vectors struct {
	Vectors []struct {
		Secret, SID, Raw string
		CookieValue      string `json:"cookie_value"`
		SetCookie        string `json:"set_cookie"`
	}
	StoredSessions []struct{ About, Value string } `json:"stored_sessions"`
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/express-session-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) == 0 || len(v.StoredSessions) == 0 {
		t.Fatal("no vectors")
	}
	return v
}

func TestUnsignVectors(t *testing.T) {
	for _, v := range loadVectors(t).Vectors {
		c := newCookieCodec("connect.sid", []string{v.Secret}, 4096)
		s := c.get()
		sid, reason := c.unsign(s, v.CookieValue)
		if reason != "" || string(sid) != v.SID {
			t.Errorf("unsign(%q) = %q, %q; want %q", v.CookieValue, sid, reason, v.SID)
		}
		if got := Sign(v.SID, v.Secret); got != v.CookieValue {
			t.Errorf("Sign(%q) = %q; want %q", v.SID, got, v.CookieValue)
		}
		if v.SetCookie != "" {
			// The value as a browser sends back what Set-Cookie set.
			h := http.Header{"Cookie": {strings.SplitN(v.SetCookie, ";", 2)[0]}}
			val, ok := findCookie(h["Cookie"], "connect.sid")
			if !ok || val != v.CookieValue {
				t.Errorf("findCookie = %q, %v", val, ok)
			}
		}
	}
}

func TestUnsign(t *testing.T) {
	const sid = "Lj2vG7dS0mFqk9yQpZb8cWx3Hn5Ru1Te"
	good := Sign(sid, "new")
	old := Sign(sid, "old")
	mac := good[strings.LastIndexByte(good, '.')+1:]
	tests := []struct {
		name  string
		value string
		want  Reason
	}{
		{"current secret", good, ""},
		{"rotated secret", old, ""},
		{"unescaped value", strings.ReplaceAll(strings.ReplaceAll(good, "%3A", ":"), "%2F", "/"), ""},
		{"lowercase escapes", strings.ReplaceAll(good, "%3A", "%3a"), ""},
		{"wrong secret", Sign(sid, "other"), ReasonBadSignature},
		{"truncated signature", good[:len(good)-1], ReasonBadSignature},
		{"signature with padding", good + "=", ReasonBadSignature},
		{"empty signature", "s%3A" + sid + ".", ReasonBadSignature},
		{"bad base64 in signature", "s%3A" + sid + "." + strings.Repeat("!", 43), ReasonBadSignature},
		{"missing s: prefix", strings.TrimPrefix(good, "s%3A"), ReasonMalformedCookie},
		{"j: prefix", "j%3A" + strings.TrimPrefix(good, "s%3A"), ReasonMalformedCookie},
		{"no dot", "s%3A" + sid, ReasonMalformedCookie},
		{"bad escape", "s%3A" + sid + "%zz." + mac, ReasonMalformedCookie},
		{"truncated escape", "s%3", ReasonMalformedCookie},
		{"empty", "", ReasonNoCookie},
		{"oversized", "s%3A" + strings.Repeat("a", 5000) + "." + mac, ReasonCookieTooLarge},
		{"sid with bad alphabet", Sign("Lj2vG7dS0mFqk9yQpZb8cWx3Hn5Ru1T+", "new"), ReasonInvalidSessionID},
		{"sid too short", Sign("short", "new"), ReasonInvalidSessionID},
		{"sid too long", Sign(strings.Repeat("a", 129), "new"), ReasonInvalidSessionID},
		{"sid with dot", Sign("Lj2vG7dS0mFqk9yQ.Zb8cWx3Hn5Ru1Te", "new"), ReasonInvalidSessionID},
		{"sid with NUL", Sign("Lj2vG7dS0mFqk9yQ\x00Zb8cWx3Hn5Ru1Te", "new"), ReasonInvalidSessionID},
		{"signed with tampered sid", strings.Replace(good, "Lj2", "Lj3", 1), ReasonBadSignature},
	}
	c := newCookieCodec("connect.sid", []string{"new", "old"}, 4096)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := c.get()
			defer c.put(s)
			got, reason := c.unsign(s, tt.value)
			if reason != tt.want {
				t.Fatalf("unsign(%q) reason = %q; want %q", tt.value, reason, tt.want)
			}
			if reason == "" && string(got) != sid {
				t.Fatalf("unsign(%q) = %q; want %q", tt.value, got, sid)
			}
		})
	}
}

func TestFindCookie(t *testing.T) {
	tests := []struct {
		header []string
		want   string
		ok     bool
	}{
		{[]string{"connect.sid=abc"}, "abc", true},
		{[]string{"a=1; connect.sid=abc; b=2"}, "abc", true},
		{[]string{"a=1;connect.sid=abc"}, "abc", true},
		{[]string{`connect.sid="abc"`}, "abc", true},
		{[]string{"connect.sid=first; connect.sid=second"}, "first", true},
		{[]string{"a=1", "connect.sid=abc"}, "abc", true},
		{[]string{"xconnect.sid=abc"}, "", false},
		{[]string{"connect.sidx=abc"}, "", false},
		{[]string{"connect.sid"}, "", false},
		{nil, "", false},
		{[]string{"connect.sid="}, "", true},
	}
	for _, tt := range tests {
		got, ok := findCookie(tt.header, "connect.sid")
		if got != tt.want || ok != tt.ok {
			t.Errorf("findCookie(%q) = %q, %v; want %q, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}
