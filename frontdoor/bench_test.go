package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

// BenchmarkServerVerify is the whole in-process path of Server: parse
// a pipelined auth subrequest from the connection buffer, decide (cache
// hit), write the answer. No syscalls: a scripted connection.
func BenchmarkServerVerify(b *testing.B) {
	f := newFixture(b, func(c *authz.Config) { c.CacheTTL = time.Hour })
	_, c := f.session(aliceJSON, time.Hour)
	req := "GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /app/dashboard\r\nX-Original-Method: GET\r\n" +
		"Cookie: _ga=GA1.1.1234; connect.sid=" + c + "\r\n\r\n"
	serveRepeated(b, f.v, req)
}

// BenchmarkVerifyTokenCacheHit is BenchmarkServerVerify for an API client:
// parse, hash the token, cache hit, answer.
func BenchmarkVerifyTokenCacheHit(b *testing.B) {
	f := newFixture(b, func(c *authz.Config) {
		c.BearerTokens = true
		c.CacheTTL = time.Hour
	})
	tok := f.token(svcJSON, time.Hour)
	req := "GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /api/invoices\r\nX-Original-Method: GET\r\n" +
		"Authorization: Bearer " + tok + "\r\n\r\n"
	if a := f.v.Decide(context.Background(), &authz.Query{Authorization: "Bearer " + tok}); a.Reason != authz.ReasonOK {
		b.Fatal(a.Reason)
	}
	serveRepeated(b, f.v, req)
}

// serveRepeated has a Server answer req b.N times on one scripted
// connection, timed, and checks that every answer was a 200.
func serveRepeated(b *testing.B, v Decider, req string) {
	s := New(Config{}, v, nil, nil, nil)
	conn := &repeatConn{req: req, n: b.N}
	sc := &serverConn{s: s, c: conn}
	s.wg.Add(1)
	s.conns[sc] = struct{}{}
	b.ReportAllocs()
	b.ResetTimer()
	sc.serve()
	b.StopTimer()
	if want := b.N; conn.answers != want {
		b.Fatalf("%d answers, want %d", conn.answers, want)
	}
}

// repeatConn delivers req n times, then EOF, and counts 200 answers, also
// one split across two writes of the connection's buffer.
type repeatConn struct {
	scriptConn
	req     string
	n, off  int
	answers int
	// tail is the end of the last write, too short to hold a whole line.
	tail  [len(ok200) - 1]byte
	ntail int
}

func (c *repeatConn) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && c.n > 0 {
		k := copy(p, c.req[c.off:])
		p, total, c.off = p[k:], total+k, c.off+k
		if c.off == len(c.req) {
			c.off, c.n = 0, c.n-1
		}
	}
	if total == 0 {
		return 0, io.EOF
	}
	return total, nil
}

func (c *repeatConn) Write(p []byte) (int, error) {
	c.answers += bytes.Count(p, okLine)
	// An answer split across two writes: the end of the last one and the
	// start of this one, neither long enough to hold it whole.
	var seam [2 * len(ok200)]byte
	n := copy(seam[:], c.tail[:c.ntail])
	n += copy(seam[n:], p[:min(len(p), len(okLine)-1)])
	c.answers += bytes.Count(seam[:n], okLine)
	if len(p) >= len(c.tail) {
		c.ntail = copy(c.tail[:], p[len(p)-len(c.tail):])
	} else {
		all := append(seam[:0:0], c.tail[:c.ntail]...) // rare: a write shorter than the line
		all = append(all, p...)
		c.ntail = copy(c.tail[:], all[max(0, len(all)-len(c.tail)):])
	}
	return len(p), nil
}

const ok200 = "HTTP/1.1 200 OK"

var okLine = []byte(ok200)

// BenchmarkFrontLoopback compares the two servers --listen can use on a
// real loopback connection, one request at a time as Nginx sends them on
// a kept-alive upstream connection: Server ("narrow") and net/http
// configured as --stdlib-http configures it ("stdlib"). Both pay the same
// client side (a write, http.ReadResponse), so the difference between
// them is the servers'.
func BenchmarkFrontLoopback(b *testing.B) {
	f := newFixture(b, func(c *authz.Config) { c.CacheTTL = time.Hour })
	_, c := f.session(aliceJSON, time.Hour)
	req := []byte("GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /app/dashboard\r\nX-Original-Method: GET\r\n" +
		"Cookie: _ga=GA1.1.1234; connect.sid=" + c + "\r\n\r\n")
	type server interface {
		Serve(net.Listener) error
		Shutdown(context.Context) error
	}
	narrow := func() server { return New(Config{}, f.v, nil, f.m, nil) }
	stdlib := func() server {
		return &http.Server{Handler: f.v, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second, ConnState: ConnState(10000, f.m)}
	}
	for _, srv := range []struct {
		name, network string
		new           func() server
	}{
		{"narrow", "tcp", narrow},
		{"stdlib", "tcp", stdlib},
		{"narrow-unix", "unix", narrow}, // --listen unix:/path
	} {
		b.Run(srv.name, func(b *testing.B) {
			addr := "127.0.0.1:0"
			if srv.network == "unix" {
				addr = filepath.Join(b.TempDir(), "authz.sock")
			}
			ln, err := net.Listen(srv.network, addr)
			if err != nil {
				b.Fatal(err)
			}
			s := srv.new()
			go s.Serve(ln)
			defer s.Shutdown(context.Background())
			conn, err := net.Dial(srv.network, ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			b.ReportAllocs()
			// Wall time on a shared machine mostly measures the scheduler;
			// the process's CPU time per request is what the servers cost
			// (the client's share is the same for both).
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%v, %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
