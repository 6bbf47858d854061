package authz

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// discardWriter is the cheapest ResponseWriter, so benchmarks measure the
// verifier, not httptest.ResponseRecorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func benchRequest(cookie string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/verify", nil)
	req.Header.Set("Cookie", "_ga=GA1.1.1234; connect.sid="+cookie)
	req.Header.Set("X-Original-URI", "/app/dashboard")
	return req
}

// BenchmarkVerifyCacheHit is the hot path: a signed cookie for a session
// already in the local cache. Target: ≤ 2 µs and ≤ 10 allocations.
func BenchmarkVerifyCacheHit(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.CacheTTL = time.Hour })
	_, c := f.session(aliceJSON, time.Hour)
	req := benchRequest(c)
	w := &discardWriter{h: make(http.Header)}
	f.v.ServeHTTP(w, req)
	if w.code != 200 {
		b.Fatalf("status %d", w.code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		f.v.ServeHTTP(w, req)
	}
}

func BenchmarkVerifyCacheHitParallel(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.CacheTTL = time.Hour })
	_, c := f.session(aliceJSON, time.Hour)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := benchRequest(c)
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			f.v.ServeHTTP(w, req)
			if w.code != 200 {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
}

// BenchmarkVerifyCacheMiss reads the session from a real redis-server every
// time (GETRANGE + PTTL + EXISTS in one round trip, then JSON decoding).
func BenchmarkVerifyCacheMiss(b *testing.B) {
	f := newFixture(b, nil)
	sid, c := f.session(aliceJSON, time.Hour)
	req := benchRequest(c)
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.v.Invalidate(sid)
		clear(w.h)
		f.v.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

func BenchmarkVerifyBadSignature(b *testing.B) {
	f := newFixture(b, nil)
	req := benchRequest(Sign("Lj2vG7dS0mFqk9yQpZb8cWx3Hn5Ru1Te", "wrong"))
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		f.v.ServeHTTP(w, req)
	}
}

func BenchmarkUnsign(b *testing.B) {
	c := newCookieCodec("connect.sid", []string{"keyboard cat"}, 4096)
	v := Sign("Lj2vG7dS0mFqk9yQpZb8cWx3Hn5Ru1Te", "keyboard cat")
	b.ReportAllocs()
	for b.Loop() {
		s := c.get()
		if _, r := c.unsign(s, v); r != "" {
			b.Fatal(r)
		}
		c.put(s)
	}
}

func BenchmarkDecode(b *testing.B) {
	d := testDecoder()
	data := []byte(aliceJSON)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerVerify is the whole in-process path of authz.Server: parse
// a pipelined auth subrequest from the connection buffer, decide (cache
// hit), write the answer. No syscalls: a scripted connection.
func BenchmarkServerVerify(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.CacheTTL = time.Hour })
	_, c := f.session(aliceJSON, time.Hour)
	req := "GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /app/dashboard\r\nX-Original-Method: GET\r\n" +
		"Cookie: _ga=GA1.1.1234; connect.sid=" + c + "\r\n\r\n"
	serveRepeated(b, f.v, req)
}

// serveRepeated has an authz.Server answer req b.N times on one scripted
// connection, timed, and checks that every answer was a 200.
func serveRepeated(b *testing.B, v *Verifier, req string) {
	s := &Server{Verifier: v}
	s.init()
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
// a kept-alive upstream connection: authz.Server ("narrow") and net/http
// configured as --stdlib-http configures it ("stdlib"). Both pay the same
// client side (a write, http.ReadResponse), so the difference between
// them is the servers'.
func BenchmarkFrontLoopback(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.CacheTTL = time.Hour })
	_, c := f.session(aliceJSON, time.Hour)
	req := []byte("GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /app/dashboard\r\nX-Original-Method: GET\r\n" +
		"Cookie: _ga=GA1.1.1234; connect.sid=" + c + "\r\n\r\n")
	type server interface {
		Serve(net.Listener) error
		Shutdown(context.Context) error
	}
	narrow := func() server { return &Server{Verifier: f.v} }
	stdlib := func() server {
		return &http.Server{Handler: f.v, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second, ConnState: f.v.ConnState(10000)}
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
