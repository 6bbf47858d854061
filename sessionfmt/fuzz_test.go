package sessionfmt

import (
	"testing"
	"time"

	"github.com/authz/authz/internal/fmtvectors"
)

// The fuzz targets hold each decoder to two properties that can fail: it
// never panics, and it accepts no cookie but the valid ones the real npm
// packages made (testdata/vectors.json): with the vectors' keys, a forged or
// changed cookie, however the fuzzer builds it, is refused. The second
// argument flips one byte of a valid cookie, the likeliest way to find
// malleable encodings.

func FuzzClientSessions(f *testing.F) {
	v := fmtvectors.Committed(f)
	now := time.UnixMilli(v.NowMS)
	var base fmtvectors.ClientSessions
	valid := map[string]bool{}
	for _, tc := range v.ClientSessions {
		if tc.Config.Secret != "" && tc.Config.SignatureAlgorithm == "" && tc.Want == "ok" {
			base = tc
			valid[tc.Cookie] = true
		}
	}
	c := csCodec(f, &base)
	for _, tc := range v.ClientSessions {
		f.Add(tc.Cookie, uint16(0), byte(0))
	}
	f.Add(base.Cookie, uint16(30), byte('A'))
	f.Fuzz(func(t *testing.T, cookie string, pos uint16, b byte) {
		for _, in := range []string{cookie, flipAt(base.Cookie, pos, b)} {
			s, err := c.Parse(nil, in, now)
			if err == nil && (!valid[in] || !jsonObject(s.Content)) {
				t.Fatalf("accepted %q (content %q)", in, s.Content)
			}
		}
	})
}

func FuzzCookieSession(f *testing.F) {
	v := fmtvectors.Committed(f)
	var base fmtvectors.CookieSession
	valid := map[[2]string]bool{}
	for _, tc := range v.CookieSession {
		if tc.Config.Hash == "sha1" && tc.Want == "ok" {
			base = tc
			valid[[2]string{tc.Value, tc.Sig}] = true
		}
	}
	c := ckCodec(f, &base)
	for _, tc := range v.CookieSession {
		f.Add(tc.Value, tc.Sig, uint16(0), byte(0))
	}
	f.Fuzz(func(t *testing.T, value, sig string, pos uint16, b byte) {
		in := [][2]string{{value, sig}, {flipAt(base.Value, pos, b), base.Sig}, {base.Value, flipAt(base.Sig, pos, b)}}
		for _, p := range in {
			got, err := c.Parse(nil, p[0], p[1])
			if err == nil && (!valid[p] || !jsonObject(got)) {
				t.Fatalf("accepted %q, %q (content %q)", p[0], p[1], got)
			}
		}
	})
}

func FuzzFastifySession(f *testing.F) {
	v := fmtvectors.Committed(f)
	var base fmtvectors.FastifySession
	for _, tc := range v.FastifySession {
		if tc.Config.Algorithm == "sha256" && tc.Config.CookiePrefix == "" && len(tc.Config.Secrets) == 1 && tc.Want == "ok" {
			base = tc
		}
	}
	// Every valid cookie signed with base's secret, whatever the list it
	// was verified with.
	valid := map[string]bool{}
	for _, tc := range v.FastifySession {
		if tc.Config.Algorithm == "sha256" && tc.Config.CookiePrefix == "" && tc.Config.Secrets[0] == base.Config.Secrets[0] && tc.Want == "ok" {
			valid[tc.SID] = true
		}
	}
	c := fsCodec(f, &base)
	baseValue, _ := c.Lookup([]string{base.Header})
	for _, tc := range v.FastifySession {
		value, _ := c.Lookup([]string{tc.Header})
		f.Add(value, uint16(0), byte(0))
	}
	f.Fuzz(func(t *testing.T, value string, pos uint16, b byte) {
		for _, in := range []string{value, flipAt(baseValue, pos, b)} {
			sid, err := c.Parse(in)
			if err != nil {
				continue
			}
			if !valid[sid] || !validSID(sid) {
				t.Fatalf("accepted %q as sid %q", in, sid)
			}
		}
	})
}

// flipAt returns s with the byte at pos (modulo its length) replaced by b,
// or s itself when b is already there: the caller's valid set holds it.
func flipAt(s string, pos uint16, b byte) string {
	if s == "" {
		return s
	}
	i := int(pos) % len(s)
	return s[:i] + string([]byte{b}) + s[i+1:]
}
