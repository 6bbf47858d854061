package frontdoor

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// FuzzParser is a differential test of the narrow server's request parser
// against net/http's http.ReadRequest. For every input, each request the
// parser accepts, net/http reads the same way: method, target, the
// headers /verify reads (Cookie, Host, X-Forwarded-Host, X-Original-URI,
// X-Original-URL, X-Forwarded-Uri, Authorization), the body's length and
// whether the connection closes after it; or the parser refuses (it may
// be stricter, never looser). Then the whole server answers the input:
// a panic fails the test (the server's recover logs it at error level,
// and the log here fails the test), and nothing is ever allowed, as no
// input can carry a valid signature for a stored session.
func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"GET /verify HTTP/1.1\r\nHost: authz\r\nCookie: connect.sid=x\r\n\r\n",
		"GET /verify?allow_users=a HTTP/1.1\r\nHost: a\r\nX-Original-URI: //evil\r\nX-Forwarded-Host: app.example\r\nCookie: a=1\r\nCookie: connect.sid=s%3Aabc.def\r\n\r\n",
		"POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /verify HTTP/1.0\r\n\r\n",
		"GET /verify HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"GET /healthz?x HTTP/1.1\r\nHost: a\r\nConnection: close, keep-alive\r\n\r\n",
		"GET /verify HTTP/1.0\r\nConnection: keep-alive\r\nX-Original-URL: https://a.example/x?y\r\n\r\n",
		"GET /verify HTTP/1.1\r\nAuthorization: Bearer azt_0123456789abcdefghij\r\n\r\n",
		// Where the parser and net/http used to differ; the parser now
		// refuses each.
		"GET /verify HTTP/1.1\nHost: a\n\n",
		"get /verify HTTP/1.1\r\n\r\n",
		"POST /verify HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
		"GET /verify HTTP/1.1\r\nAuthorization:\r\nAuthorization: Bearer azt_0123456789abcdefghij\r\n\r\n",
		"GET /verify HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /verify HTTP/1.1\r\nX-Original-URI:\r\nX-Original-URI: /x\r\n\r\n",
		"GET /ver%zzify HTTP/1.1\r\n\r\n",
	} {
		f.Add(s)
	}
	// A Redis nobody listens on: a request that got as far as Redis would
	// answer 503, never 200.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	v, err := authz.New(authz.Config{Secrets: []string{"keyboard cat"}, RedisTimeout: 50 * time.Millisecond, BearerTokens: true}, rdb,
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s := New(Config{}, v, http.HandlerFunc(authz.Healthz), nil, slog.New(failOnError{t}))
		sc := &serverConn{s: s, c: &scriptConn{in: strings.NewReader(raw)}}
		sc.br = bufio.NewReaderSize(strings.NewReader(raw), lineBuffer)
		std := bufio.NewReader(strings.NewReader(raw))
		for {
			req, err := sc.readRequest()
			if err != nil {
				break // refused, or the input ended
			}
			r, err := http.ReadRequest(std)
			if err != nil {
				t.Fatalf("parser accepted %q, net/http refuses it: %v", raw, err)
			}
			compareRequest(t, raw, req, r)
			if req.contentLength > 0 {
				if _, err := sc.br.Discard(int(req.contentLength)); err != nil {
					break
				}
			}
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				t.Fatalf("%q: the parser read the body whole, net/http did not: %v", raw, err)
			}
			if req.close {
				break
			}
		}

		// The whole server on the same input.
		c := &scriptConn{in: strings.NewReader(raw)}
		sc = &serverConn{s: s, c: c}
		s.wg.Add(1)
		s.conns[sc] = struct{}{}
		sc.serve()
		br := bufio.NewReader(&c.out)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			if resp.StatusCode == 200 && resp.Header.Get("X-Auth-User") != "" {
				t.Fatalf("allowed %q", raw)
			}
			io.Copy(io.Discard, resp.Body)
		}
	})
}

// compareRequest fails t unless the parser's req and net/http's r agree on
// everything /verify reads.
func compareRequest(t *testing.T, raw string, req *request, r *http.Request) {
	t.Helper()
	first := func(k string) string {
		if vs := r.Header[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	for _, d := range []struct {
		what      string
		got, want string
	}{
		{"method", req.method, r.Method},
		{"target", req.target, r.RequestURI},
		{"Host", req.host, r.Host},
		{"X-Forwarded-Host", req.forwardedHost, first("X-Forwarded-Host")},
		{"X-Original-URI", req.origURI, first("X-Original-Uri")},
		{"X-Original-URL", req.origURL, first("X-Original-Url")},
		{"X-Forwarded-Uri", req.forwardedURI, first("X-Forwarded-Uri")},
		{"Authorization", req.authorization, first("Authorization")},
	} {
		if d.got != d.want {
			t.Fatalf("%q: %s: parser read %q, net/http %q", raw, d.what, d.got, d.want)
		}
	}
	if !slices.Equal(req.cookies, r.Header["Cookie"]) && len(req.cookies)+len(r.Header["Cookie"]) > 0 {
		t.Fatalf("%q: Cookie: parser read %q, net/http %q", raw, req.cookies, r.Header["Cookie"])
	}
	if req.contentLength != r.ContentLength {
		t.Fatalf("%q: body length: parser read %d, net/http %d", raw, req.contentLength, r.ContentLength)
	}
	if req.close != r.Close {
		t.Fatalf("%q: connection close: parser read %v, net/http %v", raw, req.close, r.Close)
	}
}

// failOnError is a log handler that fails the test on an error record:
// the server logs a recovered panic at error level.
type failOnError struct{ t *testing.T }

func (h failOnError) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h failOnError) Handle(_ context.Context, r slog.Record) error {
	var attrs []string
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
	h.t.Fatalf("server logged an error: %s %v", r.Message, attrs)
	return nil
}
func (h failOnError) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h failOnError) WithGroup(string) slog.Handler      { return h }
