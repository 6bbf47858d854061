package sessionfmt

import (
	"testing"
	"time"

	"github.com/authz/authz/internal/fmtvectors"
)

// The codecs run on a cache miss only; these figures are their cost per
// cookie (Lookup in a two-cookie header, then Parse) with a buffer the
// caller reuses, as a pooled request would.

func BenchmarkClientSessionsParse(b *testing.B) {
	v := fmtvectors.Committed(b)
	tc := v.ClientSessions[0]
	c := csCodec(b, &tc)
	now := time.UnixMilli(v.NowMS)
	lines := []string{"_ga=GA1.2.3; " + c.CookieName() + "=" + tc.Cookie}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		value, _ := c.Lookup(lines)
		if _, err := c.Parse(buf, value, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCookieSessionParse(b *testing.B) {
	v := fmtvectors.Committed(b)
	tc := v.CookieSession[0]
	c := ckCodec(b, &tc)
	lines := []string{"_ga=GA1.2.3; " + tc.Header}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		value, sig, _ := c.Lookup(lines)
		if _, err := c.Parse(buf, value, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFastifySessionParse(b *testing.B) {
	v := fmtvectors.Committed(b)
	tc := v.FastifySession[0]
	c := fsCodec(b, &tc)
	lines := []string{"_ga=GA1.2.3; " + tc.Header}
	b.ReportAllocs()
	for b.Loop() {
		value, _ := c.Lookup(lines)
		if _, err := c.Parse(value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRevision reads a revision from a decoded client-sessions content.
func BenchmarkRevision(b *testing.B) {
	v := fmtvectors.Committed(b)
	content := []byte(v.ClientSessions[0].Content)
	path := []string{"rev"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Revision(content, path); err != nil {
			b.Fatal(err)
		}
	}
}
