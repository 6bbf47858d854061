package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// startServer serves f's Verifier with Server on a loopback port, with a
// fallback that answers /healthz and echoes POST bodies; opts change the
// Config before it starts.
func startServer(t *testing.T, f *fixture, opts ...func(*Config)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, f, ln, opts...)
}

// serveOn is startServer on a listener of the test's.
func serveOn(t *testing.T, f *fixture, ln net.Listener, opts ...func(*Config)) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", authz.Healthz)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Host", r.Host)
		w.Write(b)
	})
	cfg := Config{IdleTimeout: 2 * time.Second, MaxHeaderBytes: 8 << 10}
	for _, o := range opts {
		o(&cfg)
	}
	s := New(cfg, f.v, mux, f.m, nil)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

// send writes raw to a fresh connection to addr (testenv.Send).
func send(t *testing.T, addr, raw string) net.Conn { return testenv.Send(t, addr, raw) }

// exchange writes raw to a fresh connection and reads every response
// until the server closes it or n responses came.
func exchange(t *testing.T, addr, raw string, n int) ([]*http.Response, bool) {
	t.Helper()
	c := send(t, addr, raw)
	defer c.Close()
	br := bufio.NewReader(c)
	var out []*http.Response
	for len(out) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return out, true
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Set("X-Body", string(b))
		out = append(out, resp)
	}
	// Closed after the last answer?
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := br.ReadByte()
	// EOF, or a reset when the server closed with our unread bytes queued.
	var ne net.Error
	closed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return out, closed
}

func TestServerVerify(t *testing.T) {
	f := newFixture(t, nil)
	addr := startServer(t, f)
	_, alice := f.session(aliceJSON, time.Hour)
	req := func(extra string) string {
		return "GET /verify HTTP/1.1\r\nHost: authz\r\nCookie: a=1; connect.sid=" + alice + "\r\n" + extra + "\r\n"
	}
	// Three pipelined requests on one connection, different answers.
	raw := req("") +
		"GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /x?y=1\r\n\r\n" +
		"GET /verify?allow_users=bob HTTP/1.1\r\nHost: authz\r\nCookie: connect.sid=" + alice + "\r\n\r\n"
	resps, closed := exchange(t, addr, raw, 3)
	if len(resps) != 3 || closed {
		t.Fatalf("got %d answers, closed=%v; want 3 on a kept-alive connection", len(resps), closed)
	}
	if r := resps[0]; r.StatusCode != 200 || r.Header.Get("X-Auth-User") != "alice" || r.Header.Get("X-Auth-Email") != "alice@example.com" || r.ContentLength != 0 {
		t.Errorf("allowed: %d %v", r.StatusCode, r.Header)
	}
	if r := resps[1]; r.StatusCode != 401 || r.Header.Get("X-Auth-Redirect") != "/login?rd=%2Fx%3Fy%3D1" {
		t.Errorf("no cookie: %d %v", r.StatusCode, r.Header)
	}
	if r := resps[2]; r.StatusCode != 403 || r.Header.Get("X-Auth-User") != "" {
		t.Errorf("rule: %d %v", r.StatusCode, r.Header)
	}
	for _, r := range resps {
		if r.Header.Get("Date") == "" {
			t.Error("no Date header")
		}
	}

	// Other proxies' conventions for the original URI.
	for hdr, want := range map[string]string{
		"X-Forwarded-Uri: /caddy?x=1":                     "/login?rd=%2Fcaddy%3Fx%3D1",
		"X-Original-URL: https://app.example/ingress?y=2": "/login?rd=%2Fingress%3Fy%3D2",
	} {
		r, _ := exchange(t, addr, "GET /verify HTTP/1.1\r\n"+hdr+"\r\n\r\n", 1)
		if len(r) != 1 || r[0].Header.Get("X-Auth-Redirect") != want {
			t.Errorf("%s: %v; want X-Auth-Redirect %s", hdr, r, want)
		}
	}

	// The same answers net/http gives through ServeHTTP.
	for _, q := range []string{"", "allow_roles=admin", "allow_roles=ops", "nope=1"} {
		fr, _ := exchange(t, addr, "HEAD /verify?"+q+" HTTP/1.1\r\nCookie: connect.sid="+alice+"\r\n\r\n", 1)
		w := f.verify(alice, q)
		if len(fr) != 1 || fr[0].StatusCode != w.Code || fr[0].Header.Get("X-Auth-User") != w.Header().Get("X-Auth-User") {
			t.Errorf("query %q: Server and ServeHTTP disagree: %v vs %d %v", q, fr, w.Code, w.Header())
		}
	}
}

func TestServerConnectionHandling(t *testing.T) {
	f := newFixture(t, nil)
	addr := startServer(t, f)
	tests := []struct {
		name   string
		raw    string
		status int
		closed bool
	}{
		{"HTTP/1.0 closes", "GET /verify HTTP/1.0\r\n\r\n", 401, true},
		{"HTTP/1.0 keep-alive", "GET /verify HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 401, false},
		{"Connection: close", "GET /verify HTTP/1.1\r\nConnection: close\r\n\r\n", 401, true},
		// Where net/http's ReadRequest reads a request differently or two
		// readers could pick different values: refused (FuzzParser).
		{"LF-only lines", "GET /verify HTTP/1.1\nHost: x\n\n", 400, true},
		{"bare LF in the header", "GET /verify HTTP/1.1\r\nHost: x\nCookie: a=b\r\n\r\n", 400, true},
		{"lower-case method", "get /verify HTTP/1.1\r\n\r\n", 400, true},
		{"signed length", "POST /verify HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400, true},
		{"two Authorization", "GET /verify HTTP/1.1\r\nAuthorization:\r\nAuthorization: Bearer azt_x\r\n\r\n", 400, true},
		{"two Host", "GET /verify HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, true},
		{"two X-Forwarded-Host", "GET /verify HTTP/1.1\r\nX-Forwarded-Host: a\r\nx-forwarded-host: b\r\n\r\n", 400, true},
		{"two X-Original-URI", "GET /verify HTTP/1.1\r\nX-Original-URI:\r\nX-Original-URI: /x\r\n\r\n", 400, true},
		{"bad escape in path", "GET /veri%zzfy HTTP/1.1\r\n\r\n", 400, true},
		{"escape in query left to the rules", "GET /verify?allow_users=a%zz HTTP/1.1\r\n\r\n", 500, false},
		{"two cookies kept", "GET /verify HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n", 401, false},
		{"upper-case extension method", "M-SEARCH /verify HTTP/1.1\r\n\r\n", 401, false},
		{"body discarded", "POST /verify HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 401, false},
		{"fallback", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200, false},
		{"unknown path", "GET /nope HTTP/1.1\r\n\r\n", 404, false},
		{"chunked refused", "POST /verify HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, true},
		{"space before colon", "GET /verify HTTP/1.1\r\nCookie : connect.sid=x\r\n\r\n", 400, true},
		{"folded header", "GET /verify HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n", 400, true},
		{"no colon", "GET /verify HTTP/1.1\r\nnonsense\r\n\r\n", 400, true},
		{"absolute target", "GET http://x/verify HTTP/1.1\r\n\r\n", 400, true},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, true},
		{"bad version", "GET /verify HTTP/1.2\r\n\r\n", 400, true},
		{"NUL in value", "GET /verify HTTP/1.1\r\nCookie: a\x00b\r\n\r\n", 400, true},
		{"conflicting lengths", "POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, true},
		{"negative length", "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, true},
		{"body too large", "POST /echo HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413, true},
		{"header too large", "GET /verify HTTP/1.1\r\nCookie: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431, true},
		{"line too long", "GET /verify HTTP/1.1\r\nCookie: " + strings.Repeat("a", 20000) + "\r\n\r\n", 431, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resps, closed := exchange(t, addr, tt.raw, 1)
			if len(resps) != 1 {
				t.Fatalf("no answer")
			}
			if resps[0].StatusCode != tt.status || closed != tt.closed {
				t.Errorf("status %d closed %v; want %d closed %v", resps[0].StatusCode, closed, tt.status, tt.closed)
			}
		})
	}
	resps, _ := exchange(t, addr, "POST /echo HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nhello", 1)
	if r := resps[0]; r.Header.Get("X-Body") != "hello" || r.Header.Get("X-Method") != "POST" || r.Header.Get("X-Host") != "app.example" {
		t.Errorf("fallback got %v", r.Header)
	}
	resps, _ = exchange(t, addr, "HEAD /healthz HTTP/1.1\r\n\r\n", 1)
	if r := resps[0]; r.StatusCode != 200 || r.ContentLength != 3 || r.Header.Get("X-Body") != "" {
		t.Errorf("HEAD fallback: %d len %d body %q", r.StatusCode, r.ContentLength, r.Header.Get("X-Body"))
	}
}

func TestServerPipelinedAnswerNotHeldBack(t *testing.T) {
	f := newFixture(t, nil)
	addr := startServer(t, f)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// A whole request and the start of the next: the first answer must
	// come although the server is waiting for the rest of the second.
	io.WriteString(c, "GET /verify HTTP/1.1\r\nHost: a\r\n\r\nGET /veri")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("first answer: %v, %v", resp, err)
	}
}

func TestServerSurvivesHandlerPanic(t *testing.T) {
	f := newFixture(t, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := New(Config{}, f.v, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), f.m, nil)
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	resps, closed := exchange(t, ln.Addr().String(), "GET /boom HTTP/1.1\r\n\r\n", 1)
	if len(resps) != 0 || !closed {
		t.Fatalf("panicking handler: %d answers, closed=%v; want the connection closed", len(resps), closed)
	}
	if resps, _ := exchange(t, ln.Addr().String(), "GET /verify HTTP/1.1\r\n\r\n", 1); len(resps) != 1 || resps[0].StatusCode != 401 {
		t.Fatalf("after a panic the server no longer answers: %v", resps)
	}
}

func TestServerShutdownDrains(t *testing.T) {
	f := newFixture(t, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := New(Config{}, f.v, nil, f.m, nil)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	// An idle keep-alive connection must not hold shutdown up.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /verify HTTP/1.1\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle connection: %v", err)
	}
	if err := <-done; err != http.ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

func TestServerKeepAlivesOff(t *testing.T) {
	f := newFixture(t, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := New(Config{}, f.v, nil, f.m, nil)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	defer func() {
		s.Shutdown(context.Background())
		<-done
	}()
	addr := ln.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(idle)
	io.WriteString(idle, "GET /verify HTTP/1.1\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.Close {
		t.Fatalf("before: %v, %v; want a keep-alive answer", resp, err)
	}
	// A connection opened but not used yet must survive the switch.
	fresh, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	fresh.SetDeadline(time.Now().Add(5 * time.Second))

	s.SetKeepAlivesEnabled(false)
	// The idle keep-alive connection is closed...
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("idle connection still open after keep-alives were turned off (read %q)", b)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle connection not closed within 5s")
	}
	// ...new and fresh ones are still answered, once, with Connection: close.
	resps, closed := exchange(t, addr, "GET /verify HTTP/1.1\r\n\r\nGET /verify HTTP/1.1\r\n\r\n", 2)
	if len(resps) != 1 || !resps[0].Close || !closed {
		t.Fatalf("new connection: %d answers, Connection: close %v, closed %v; want 1, true, true", len(resps), len(resps) == 1 && resps[0].Close, closed)
	}
	io.WriteString(fresh, "GET /healthz HTTP/1.1\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(fresh), nil); err != nil || !resp.Close {
		t.Fatalf("connection opened before the switch: %v, %v; want an answer with Connection: close", resp, err)
	}
}

// closedWithin reads c until the server closes it or d passes, and
// reports whether it closed (EOF or reset) and what it sent first.
func closedWithin(c net.Conn, d time.Duration) (bool, string) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout()), string(b)
}

func TestServerHalfSentRequestTimesOut(t *testing.T) {
	f := newFixture(t, nil)
	const rht = 300 * time.Millisecond
	// The idle timeout is far longer than the test: only the header
	// deadline can close these connections.
	addr := startServer(t, f, func(c *Config) { c.IdleTimeout = time.Hour; c.ReadHeaderTimeout = rht })
	timeouts := func() float64 { return f.bound("read_header_timeout") }
	before := timeouts()
	for _, tc := range []struct{ name, first, then string }{
		{"silent new connection", "", ""},
		{"part of a request line", "", "GET /veri"},
		{"header without its end", "", "GET /verify HTTP/1.1\r\nHost: a\r\n"},
		{"after an answered request", "GET /verify HTTP/1.1\r\nHost: a\r\n\r\n", "GET /verify HTTP/1.1\r\nCookie: a"},
		// A header sent whole, its body never: the body is part of the
		// request, read under the same deadline.
		{"body never sent", "", "GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"},
		{"body never sent after an answered request", "GET /verify HTTP/1.1\r\nHost: a\r\n\r\n", "GET /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"},
		{"fallback body cut short after an answered request", "GET /verify HTTP/1.1\r\nHost: a\r\n\r\n", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nx="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			if tc.first != "" {
				io.WriteString(c, tc.first)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 401 {
					t.Fatalf("first request: %v, %v", resp, err)
				}
			}
			io.WriteString(c, tc.then)
			start := time.Now()
			closed, _ := closedWithin(c, 5*time.Second)
			if !closed {
				t.Fatalf("a half-sent request still held its connection after 5s (header timeout %v)", rht)
			}
			if el := time.Since(start); el < rht/2 {
				t.Errorf("closed after %v, before the header timeout %v", el, rht)
			}
		})
	}
	if got := timeouts() - before; got != 7 {
		t.Errorf("authz_bounds_hit_total{bound=read_header_timeout} rose by %v, want 7", got)
	}

	// A kept-alive connection idle between requests is no half-sent
	// request: still open after several header timeouts, then answered.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "GET /verify HTTP/1.1\r\nHost: a\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 401 {
			t.Fatalf("request %d on a kept-alive connection: %v, %v", i, resp, err)
		}
		if i == 0 {
			c.SetReadDeadline(time.Now().Add(4 * rht))
			if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("idle kept-alive connection: read %v, want it left open past the header timeout", err)
			}
		}
	}
}

// smallWriteBuffers is a listener whose connections have a small send
// buffer, so a client that does not read blocks the server's writes soon.
type smallWriteBuffers struct{ net.Listener }

func (l smallWriteBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

func TestServerWriteTimeout(t *testing.T) {
	f := newFixture(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, f, smallWriteBuffers{ln}, func(c *Config) { c.IdleTimeout = time.Hour; c.WriteTimeout = 300 * time.Millisecond })
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(4096)
	// Pipelined requests, answers never read: the server's writes block,
	// then it stops reading, and these writes block too until it closes.
	done := make(chan error, 1)
	go func() {
		req := []byte(strings.Repeat("GET /verify HTTP/1.1\r\nHost: a\r\n\r\n", 64))
		for {
			if _, err := c.Write(req); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a client that reads no answers still held its connection after 10s (write timeout 300ms)")
	}
}

func TestServerMaxConns(t *testing.T) {
	f := newFixture(t, nil)
	addr := startServer(t, f, func(c *Config) { c.MaxConns = 2 })
	makesRoomAtTheCap(t, f, addr)
	// Twenty half-sent requests, reconnected as fast as they are closed,
	// never keep a new client out.
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /verify HTTP/1.1\r\nHo")
	}
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if err := askVerify(late); err != nil {
		t.Fatalf("a client after twenty half-sent requests at the cap: %v", err)
	}
	testenv.WaitFor(t, 5*time.Second, "the connections closed to make room to end", func() bool {
		return f.m.conns.Load() == 2
	})
	// Nor do requests whose header came whole and whose body never does,
	// on connections that were answered before: a request still arriving
	// makes room like one waiting for its header.
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := askVerify(c); err != nil {
			t.Fatalf("a request before its body-less one at the cap: %v", err)
		}
		io.WriteString(c, "POST /verify HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
	}
	late2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late2.Close()
	if err := askVerify(late2); err != nil {
		t.Fatalf("a client after twenty requests without their bodies at the cap: %v", err)
	}
}

// askVerify sends one anonymous /verify on c and checks it is answered 401.
func askVerify(c net.Conn) error {
	io.WriteString(c, "GET /verify HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil && resp.StatusCode != 401 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// makesRoomAtTheCap is the connection cap's story against a server at addr
// capped at two connections: one more at the cap takes the place of the
// connection idle longest, so a client holding idle connections cannot
// keep a new one out, and the other idle one keeps being served.
func makesRoomAtTheCap(t *testing.T, f *fixture, addr string) {
	t.Helper()
	hits := func() float64 { return f.bound("connections") }
	before := hits()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	kept := []net.Conn{dial(), dial()}
	for _, c := range kept {
		if err := askVerify(c); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.m.conns.Load(); got != 2 {
		t.Errorf("authz_connections_open %d, want 2", got)
	}
	if err := askVerify(dial()); err != nil {
		t.Fatalf("a connection past the cap: %v; want it answered", err)
	}
	if got := hits() - before; got != 1 {
		t.Errorf("authz_bounds_hit_total{bound=connections} rose by %v, want 1", got)
	}
	// One of the idle two made room (which one is a matter of
	// microseconds: net/http marks a connection idle after its answer is
	// sent); the other is still served.
	testenv.WaitFor(t, 5*time.Second, "the connection closed to make room to end", func() bool {
		return f.m.conns.Load() == 2
	})
	var served int
	for _, c := range kept {
		if askVerify(c) == nil {
			served++
		}
	}
	if served != 1 {
		t.Fatalf("%d of the two idle connections still served at the cap, want 1", served)
	}
}

// scriptConn is a connection whose peer sent in and then closed its side;
// what the server writes collects in out.
type scriptConn struct {
	in  *strings.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)         { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)        { return c.out.Write(p) }
func (c *scriptConn) Close() error                       { return nil }
func (c *scriptConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error        { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error    { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// TestStdlibConnStateMakesRoom: with --stdlib-http, too, a connection past
// the cap takes the place of the one idle longest instead of being
// refused.
func TestStdlibConnStateMakesRoom(t *testing.T) {
	f := newFixture(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: f.v, ConnState: ConnState(2, f.m)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	makesRoomAtTheCap(t, f, ln.Addr().String())
}

// TestServerFallbackEndsWhenClientLeaves: a fallback request's context
// ends when its client closes the connection, as net/http's does, so a
// user-wide logout walk stops when nobody waits for it; a client that
// sends more meanwhile (a pipelined request) is still there, and is
// answered, on a connection closed after the answer.
func TestServerFallbackEndsWhenClientLeaves(t *testing.T) {
	f := newFixture(t, nil)
	entered := make(chan struct{}, 1)
	ended := make(chan error, 1)
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-release:
			ended <- nil
		case <-time.After(10 * time.Second):
			ended <- errors.New("still running 10s after the client left")
		}
		w.Write([]byte("done"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{IdleTimeout: time.Hour, ReadHeaderTimeout: 200 * time.Millisecond}, f.v, h, f.m, nil)
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	addr := ln.Addr().String()
	const post = "POST /logout?everywhere=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nx="

	t.Run("client leaves", func(t *testing.T) {
		c := send(t, addr, post)
		<-entered
		c.Close()
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("handler's context after the client left: %v, want canceled", err)
		}
	})
	t.Run("client stays past the header timeout", func(t *testing.T) {
		c := send(t, addr, post)
		br := bufio.NewReader(c)
		<-entered
		// Longer than ReadHeaderTimeout: the watch must not take the
		// deadline armed for the request for the client leaving.
		c.SetReadDeadline(time.Now().Add(600 * time.Millisecond))
		if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read while the handler runs: %v, want nothing yet", err)
		}
		release <- struct{}{}
		if err := <-ended; err != nil {
			t.Fatalf("handler's context with the client still there: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("answer: %v, %v; want a kept-alive 200", resp, err)
		}
		resp.Body.Close()
		// The connection goes on in step.
		if err := askVerify(c); err != nil {
			t.Fatalf("next request on the connection: %v", err)
		}
	})
	t.Run("client pipelines meanwhile", func(t *testing.T) {
		c := send(t, addr, post)
		br := bufio.NewReader(c)
		<-entered
		io.WriteString(c, "GET /verify HTTP/1.1\r\nHost: a\r\n\r\n")
		// The watch reads a byte of it: the handler must go on.
		select {
		case err := <-ended:
			t.Fatalf("handler ended (%v) while its client was still there", err)
		case <-time.After(300 * time.Millisecond):
		}
		release <- struct{}{}
		if err := <-ended; err != nil {
			t.Fatalf("handler's context with the client still there: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("answer: %v, %v; want a 200 with Connection: close", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		if closed, _ := closedWithin(c, 5*time.Second); !closed {
			t.Fatal("connection left open after a watch read part of the next request")
		}
	})
}
