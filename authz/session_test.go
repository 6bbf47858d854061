package authz

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func testDecoder() *decoder {
	c := Config{}
	c.setDefaults()
	email, _ := ParseHeaderMapping("X-Auth-Email=passport.user.email")
	roles, _ := ParseHeaderMapping("x-auth-roles=passport.user.roles")
	return &decoder{userPaths: c.UserPaths, rolesPaths: c.RolesPaths, headers: []HeaderMapping{email, roles}, maxHeader: 2048}
}

func TestDecodeVectors(t *testing.T) {
	want := []string{"u1", "42", "0.36535326065695717", ""}
	for i, s := range loadVectors(t).StoredSessions {
		got, err := testDecoder().decode([]byte(s.Value))
		if err != nil {
			t.Fatalf("%s: %v", s.About, err)
		}
		if got.User != want[i] {
			t.Errorf("%s: user %q; want %q", s.About, got.User, want[i])
		}
	}
}

func TestDecode(t *testing.T) {
	const cookie = `"cookie":{"originalMaxAge":3600000,"expires":"2026-11-21T23:00:00.000Z","httpOnly":true,"path":"/"}`
	tests := []struct {
		name    string
		json    string
		user    string
		roles   []string
		headers map[string]string
		wantErr bool
	}{
		{name: "passport string", json: `{` + cookie + `,"passport":{"user":"alice"}}`, user: "alice"},
		{name: "passport number", json: `{"passport":{"user":42}}`, user: "42"},
		{name: "passport zero is signed in", json: `{"passport":{"user":0}}`, user: "0"},
		// Numbers read as JavaScript's String() writes them: the id the
		// app's passport sees.
		{name: "big number as Node reads it", json: `{"passport":{"user":12345678901234567890}}`, user: "12345678901234567000"},
		{name: "float as Node reads it", json: `{"user":{"id":0.36535326065695717}}`, user: "0.36535326065695717"},
		{name: "exponent as Node reads it", json: `{"passport":{"user":1e3}}`, user: "1000"},
		{
			name: "passport object", user: "7", roles: []string{"admin", "ops"},
			json:    `{"passport":{"user":{"id":7,"email":"a@example.com","roles":["admin","ops"]}}}`,
			headers: map[string]string{"X-Auth-Email": "a@example.com", "X-Auth-Roles": "admin,ops"},
		},
		{name: "roles as comma string", json: `{"passport":{"user":{"id":"a","roles":"admin, ops"}}}`, user: "a", roles: []string{"admin", "ops"}},
		{name: "passport wins over user", json: `{"passport":{"user":"p"},"user":{"id":"u"}}`, user: "p"},
		{name: "user string", json: `{"user":"bob"}`, user: "bob"},
		{name: "empty passport is anonymous", json: `{"passport":{}}`},
		{name: "no user is anonymous", json: `{` + cookie + `}`},
		{name: "null user is anonymous", json: `{"passport":{"user":null}}`},
		{name: "empty string user is anonymous", json: `{"passport":{"user":""}}`},
		{name: "false user is anonymous", json: `{"passport":{"user":false}}`},
		{name: "passport not an object", json: `{"passport":"x","user":"u"}`, user: "u"},
		{name: "unicode user", json: `{"passport":{"user":"zoë"}}`, user: "zoë"},
		{name: "CRLF in email header dropped", json: `{"passport":{"user":{"id":"a","email":"a@x\r\nX-Auth-User: root"}}}`, user: "a", headers: map[string]string{}},
		{name: "object email not emitted", json: `{"passport":{"user":{"id":"a","email":{"x":1}}}}`, user: "a", headers: map[string]string{}},
		{name: "CRLF in user", json: `{"passport":{"user":"a\r\nX-Auth-User: root"}}`, wantErr: true},
		{name: "tab in user", json: `{"passport":{"user":"a\tb"}}`, wantErr: true},
		{name: "DEL in user", json: "{\"passport\":{\"user\":\"a\x7f\"}}", wantErr: true},
		{name: "oversized user", json: `{"passport":{"user":"` + strings.Repeat("a", 3000) + `"}}`, wantErr: true},
		{name: "spaces around user", json: `{"passport":{"user":"admin "}}`, wantErr: true},
		{name: "blank user", json: `{"passport":{"user":" "}}`, wantErr: true},
		{name: "leading tab in user", json: `{"passport":{"user":"\tadmin"}}`, wantErr: true},
		{name: "inner space kept", json: `{"passport":{"user":"ann lee"}}`, user: "ann lee"},
		{name: "spaces around email trimmed", json: `{"passport":{"user":{"id":"a","email":" a@x "}}}`, user: "a", headers: map[string]string{"X-Auth-Email": "a@x"}},
		{name: "user true", json: `{"passport":{"user":true}}`, wantErr: true},
		{name: "user array", json: `{"passport":{"user":["a"]}}`, wantErr: true},
		{name: "user object without id", json: `{"passport":{"user":{"name":"a"}}}`, wantErr: true},
		{name: "user object with object id", json: `{"passport":{"user":{"id":{"x":1}}}}`, wantErr: true},
		{name: "not JSON", json: `not json`, wantErr: true},
		{name: "JSON array", json: `["passport"]`, wantErr: true},
		{name: "JSON string", json: `"alice"`, wantErr: true},
		{name: "JSON null", json: `null`, wantErr: true},
		{name: "trailing garbage", json: `{"passport":{"user":"a"}} {}`, wantErr: true},
		{name: "truncated", json: `{"passport":{"user":"a"`, wantErr: true},
		{name: "empty", json: ``, wantErr: true},
		{name: "odd cookie ignored", json: `{"cookie":42,"passport":{"user":"a"}}`, user: "a"},
		{name: "odd expires ignored", json: `{"cookie":{"expires":12},"passport":{"user":"a"}}`, user: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := testDecoder().decode([]byte(tt.json))
			if (err != nil) != tt.wantErr {
				t.Fatalf("decode(%s) error = %v; wantErr %v", tt.json, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if s.User != tt.user {
				t.Errorf("user = %q; want %q", s.User, tt.user)
			}
			if tt.roles != nil && !slices.Equal(s.Roles, tt.roles) {
				t.Errorf("roles = %q; want %q", s.Roles, tt.roles)
			}
			if tt.headers != nil {
				got := map[string]string{}
				for _, h := range s.Headers {
					got[h.Name] = h.Value[0]
				}
				if len(got) != len(tt.headers) {
					t.Errorf("headers = %q; want %q", got, tt.headers)
				}
				for k, v := range tt.headers {
					if got[k] != v {
						t.Errorf("header %s = %q; want %q", k, got[k], v)
					}
				}
			}
		})
	}
}

func TestDecodeCookieFields(t *testing.T) {
	s, err := testDecoder().decode([]byte(`{"cookie":{"originalMaxAge":3600000,"expires":"2026-11-21T23:00:00.000Z"},"passport":{"user":"a"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.OriginalMaxAge != time.Hour {
		t.Errorf("OriginalMaxAge = %v", s.OriginalMaxAge)
	}
	if want := time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC); !s.Expires.Equal(want) {
		t.Errorf("Expires = %v; want %v", s.Expires, want)
	}
}

func TestDecodeEnforceExpires(t *testing.T) {
	d := testDecoder()
	d.enforceExpires = true
	for _, bad := range []string{
		`{"cookie":{"expires":12},"passport":{"user":"a"}}`,
		`{"cookie":{"expires":"yesterday"},"passport":{"user":"a"}}`,
		`{"cookie":"x","passport":{"user":"a"}}`,
	} {
		if _, err := d.decode([]byte(bad)); err == nil {
			t.Errorf("decode(%s) with enforced expires: no error", bad)
		}
	}
	if _, err := d.decode([]byte(`{"cookie":{"expires":null},"passport":{"user":"a"}}`)); err != nil {
		t.Errorf("null expires: %v", err)
	}
}

func TestParseHeaderMapping(t *testing.T) {
	m, err := ParseHeaderMapping("x-auth-email=passport.user.email")
	if err != nil || m.Header != "X-Auth-Email" || !slices.Equal(m.Path, []string{"passport", "user", "email"}) {
		t.Errorf("got %+v, %v", m, err)
	}
	for _, bad := range []string{"", "X-Auth-Email", "=a.b", "X-Auth-Email=", "X Auth=a", "X_Auth=a", "X-Auth=a..b", "X-Auth\r\n=a"} {
		if _, err := ParseHeaderMapping(bad); err == nil {
			t.Errorf("ParseHeaderMapping(%q): no error", bad)
		}
	}
}
