package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authz/authz/authz"
)

// Decider is what the front door asks of the read path: a decision, and
// the two things of the decider's configuration the answer depends on
// besides the decision itself. *authz.Verifier is one.
//
// The answer's size is the decider's business: it leaves out of an Answer
// what would not fit --max-answer-header-bytes less a fixed part (status
// line, Date, Content-Length, Connection: close; under 128 bytes here), so
// writeAnswer adds nothing but that part and the headers the Answer and
// its Reason carry (TestEveryAnswerFitsTheCap).
type Decider interface {
	// Decide answers one auth subrequest.
	Decide(ctx context.Context, q *authz.Query) authz.Answer
	// RequestHost picks the host the user asked for from the headers a
	// proxy may carry it in: which one counts is the decider's
	// configuration (it chooses the tenant), not the server's.
	RequestHost(xForwardedHost, xOriginalURL, host string) string
	// UserHeader names the header that carries an allowed identity. It is
	// read once, when the Server is made.
	UserHeader() string
}

// Config is the Server's own configuration. The zero value of a field
// means its documented default.
type Config struct {
	// IdleTimeout closes a kept-alive connection with no request for this
	// long (default 5 minutes). Nginx keeps its idle upstream connections
	// for less (keepalive_timeout 60s in nginx/).
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds reading one request, from its first byte to
	// the end of its header and of its body (a header that promises a
	// body and stops holds a connection no longer than a half-sent
	// header), and a new connection's wait for its first request (default
	// 5 s). Past it the connection is closed: a client that sends part of
	// a request and stops holds a connection this long, not IdleTimeout.
	// The wait between two requests of a kept-alive connection is not part
	// of it.
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds how long writing answers may block on a client
	// that does not read them (default 10 s); past it the connection is
	// closed.
	WriteTimeout time.Duration
	// MaxConns bounds the connections open at once (default 10000). At
	// the bound a new connection is counted in
	// authz_bounds_hit_total{bound="connections"} and takes the place of
	// the one that has waited longest for a request (idle, or sending its
	// header or body); it is closed only when every open one is being
	// answered.
	// So a client holding connections idle cannot keep others out, and
	// Nginx, which reopens a closed idle connection, loses nothing.
	MaxConns int
	// MaxHeaderBytes bounds a request's line and header (default 64 KiB).
	MaxHeaderBytes int
}

func (c *Config) setDefaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 10000
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
}

// Server serves the verify endpoint to Nginx over HTTP/1.1 keep-alive
// connections, and hands every other path to a fallback http.Handler.
//
// Why not net/http alone: an auth subrequest is a few header lines in and a
// few header lines out, and on the machines authz shares with Nginx the
// generic server's per-request work (a Request and its Header map, a
// context, deadline timers, a background read per request) costs more CPU
// than the decision itself, and Nginx waits on every one of them. Server
// parses only what a verify request needs and writes the answer straight
// into the connection's buffer.
//
// It is deliberately narrow and fails closed: only origin-form targets,
// HTTP/1.0 and 1.1, no header folding, no chunked request bodies, bounded
// header size; anything else is answered 400, 413, 431 or 501 and the
// connection closed. Nginx never sends those to an upstream, and a 4xx/5xx
// on an auth subrequest denies the request.
type Server struct {
	cfg Config
	d   Decider
	// userHeader is d.UserHeader(), read once.
	userHeader string
	// fallback serves every other path; its response is buffered and
	// sent with a Content-Length.
	fallback http.Handler
	m        *Metrics
	log      *slog.Logger

	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	ln      net.Listener
	conns   map[*serverConn]struct{}
	closing atomic.Bool
	// noKeepAlive: every answer closes its connection (a drain has begun).
	noKeepAlive atomic.Bool
	wg          sync.WaitGroup
	date        atomic.Pointer[dateLine]
}

// New returns a Server answering /verify with d and every other path
// (/healthz, /readyz, /logout) with fallback (nil: 404). It counts in m
// (nil: nowhere) and logs connection-level errors to log (nil: nowhere).
func New(cfg Config, d Decider, fallback http.Handler, m *Metrics, log *slog.Logger) *Server {
	cfg.setDefaults()
	if fallback == nil {
		fallback = http.NotFoundHandler()
	}
	if m == nil {
		m = unregisteredMetrics()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, d: d, userHeader: d.UserHeader(),
		fallback: fallback, m: m, log: log,
		conns: make(map[*serverConn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// maxBody bounds a request body the fallback may read (a logout form).
const maxBody = 64 << 10

// lineBuffer bounds one header line; Nginx's own default
// (large_client_header_buffers 4 8k) keeps lines under 8 KiB.
const lineBuffer = 16 << 10

// Serve accepts connections on ln until Shutdown. It returns
// http.ErrServerClosed after Shutdown, like http.Server.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	if s.closing.Load() {
		ln.Close()
		return http.ErrServerClosed
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		sc := &serverConn{s: s, c: c}
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			c.Close()
			return http.ErrServerClosed
		}
		if len(s.conns) >= s.cfg.MaxConns {
			s.m.connections.Inc()
			// Make room by closing the connection that has waited longest
			// for a request, rather than refusing this one: connections a
			// client opens and leaves idle must not keep Nginx's new ones
			// out. Only a connection being answered is never closed.
			old := s.longestWaiting()
			if old == nil {
				s.mu.Unlock()
				c.Close()
				continue
			}
			delete(s.conns, old) // its own goroutine finishes the rest
			old.c.Close()
		}
		sc.since.Store(time.Now().UnixNano())
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.m.conns.Add(1)
		go sc.serve()
	}
}

// longestWaiting returns the open connection that has waited longest for
// its next request (or its first), or nil when every one is being
// answered. s.mu is held.
func (s *Server) longestWaiting() *serverConn {
	var oldest *serverConn
	for sc := range s.conns {
		if !sc.busy.Load() && (oldest == nil || sc.since.Load() < oldest.since.Load()) {
			oldest = sc
		}
	}
	return oldest
}

// Shutdown stops accepting, lets every request in progress finish, closes
// idle connections, and waits for all of them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
	}
	for sc := range s.conns {
		sc.wakeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for sc := range s.conns {
			sc.c.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// SetKeepAlivesEnabled turns HTTP keep-alive on or off, as http.Server's
// method of the same name does. Off, every answer says "Connection: close"
// and connections waiting for their next request are closed, while new
// connections are still accepted and answered. It is the first step of a
// graceful drain: a client with a connection pool (Nginx's upstream
// keepalive, a kube-proxy'd Service) opens its next connection wherever
// its balancer points now, and no request in progress is cut.
func (s *Server) SetKeepAlivesEnabled(v bool) {
	s.noKeepAlive.Store(!v)
	if v {
		return
	}
	s.mu.Lock()
	for sc := range s.conns {
		// A connection that has not sent its first request yet is about
		// to: closing it would only make the client retry elsewhere.
		if sc.served.Load() {
			sc.wakeIfIdle()
		}
	}
	s.mu.Unlock()
}

type serverConn struct {
	s  *Server
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// req and arena are reused for every request on the connection:
	// nothing of a verify request outlives its answer.
	req   request
	arena []byte
	spans []span
	// busy is set while a request is being handled, so Shutdown only
	// interrupts connections waiting for their next request.
	busy atomic.Bool
	// served is set once the connection has answered a request.
	served atomic.Bool
	// since is when the connection began to wait for its next request
	// (UnixNano): the longest waiting is closed first at MaxConns.
	since atomic.Int64
}

func (sc *serverConn) wakeIfIdle() {
	if !sc.busy.Load() {
		sc.c.SetReadDeadline(time.Now())
	}
}

// request is one parsed request; strings are copies, safe to keep.
type request struct {
	method, target, path, rawQuery string
	minor                          int // HTTP/1.<minor>
	header                         http.Header
	cookies                        []string
	// The single-valued headers /verify reads, as sent ("" when absent).
	// Each may appear once: a second copy is refused, as net/http refuses
	// a second Host, so no two readers can pick different ones.
	origURI, origURL, forwardedURI string
	host, forwardedHost            string
	authorization                  string
	contentLength                  int64
	close                          bool
	// body is a fallback request's body (a /verify body is dropped).
	body []byte
}

// Parse errors and the status each answers with.
type parseError struct {
	status int
	msg    string
}

func (e *parseError) Error() string { return e.msg }

var (
	errBadRequest   = &parseError{http.StatusBadRequest, "malformed request"}
	errHeaderTooBig = &parseError{http.StatusRequestHeaderFieldsTooLarge, "request header too large"}
	errBodyTooBig   = &parseError{http.StatusRequestEntityTooLarge, "request body too large"}
	errChunked      = &parseError{http.StatusNotImplemented, "chunked request bodies are not supported"}
)

func (sc *serverConn) serve() {
	s := sc.s
	defer func() {
		// A panicking handler costs its connection, not the process.
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			s.log.Error("panic serving a connection", "panic", p, "stack", string(debug.Stack()))
		}
		sc.bw.Flush()
		sc.c.Close()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		s.m.conns.Add(-1)
		s.wg.Done()
	}()
	// Answers wait in bw while more pipelined requests are already
	// buffered; flushingReader sends them before any read that could block.
	sc.bw = bufio.NewWriterSize(sc.c, 4096)
	sc.br = bufio.NewReaderSize(flushingReader{sc}, lineBuffer)
	var q authz.Query
	// deadline is the idle read deadline last armed (zero: none is), and
	// wdeadline the write deadline. Re-arming a deadline costs more than
	// the rest of reading a request, so neither is set per request: each
	// is re-armed once half of it is used up, so a connection idles
	// between IdleTimeout/2 and IdleTimeout and a blocked write ends
	// between WriteTimeout/2 and WriteTimeout.
	var deadline, wdeadline time.Time
	// Until its first request a connection has ReadHeaderTimeout.
	sc.c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	for n := 0; ; n++ {
		if s.closing.Load() {
			return
		}
		idle := sc.br.Buffered() == 0
		if idle || n%64 == 0 {
			now := time.Now()
			// It begins to wait for its next request (or, pipelining, is
			// still busy): the clock read the deadlines need anyway dates
			// it for MaxConns, which closes the longest waiting first.
			sc.since.Store(now.UnixNano())
			if now.After(wdeadline.Add(-s.cfg.WriteTimeout / 2)) {
				wdeadline = now.Add(s.cfg.WriteTimeout)
				sc.c.SetWriteDeadline(wdeadline)
			}
			if idle && n > 0 && now.After(deadline.Add(-s.cfg.IdleTimeout/2)) {
				deadline = now.Add(s.cfg.IdleTimeout)
				sc.c.SetReadDeadline(deadline)
				if s.closing.Load() || s.noKeepAlive.Load() && sc.served.Load() {
					return // a drain's wake-up may have come just before
				}
			}
		}
		if idle {
			// Wait for the next request's first byte (this sends the
			// answers still buffered).
			if _, err := sc.br.Peek(1); err != nil {
				if n == 0 {
					sc.timedOut(err)
				}
				return
			}
		}
		if !headerBuffered(sc.br) {
			// A request has begun but its header has not all come: it
			// gets ReadHeaderTimeout from now, and the idle deadline is
			// armed again before the next wait.
			sc.c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
			deadline = time.Time{}
		}
		req, err := sc.readRequest()
		if err == nil && req.contentLength > 0 {
			if !deadline.IsZero() && req.contentLength > int64(sc.br.Buffered()) {
				// The header came whole under the idle deadline, the body
				// has not: it gets ReadHeaderTimeout, as a header would,
				// so a client cannot hold a connection with a body it
				// never sends.
				sc.c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
				deadline = time.Time{}
			}
			// Until its body is read a request is still arriving, and its
			// connection may make room at MaxConns like a half-sent header.
			err = sc.readBody(req)
		}
		sc.busy.Store(true)
		if err != nil {
			var pe *parseError
			if err == errHeaderTooBig {
				s.m.requestHeader.Inc()
			}
			if errors.As(err, &pe) {
				sc.writeSimple(pe.status, "close")
				sc.bw.Flush()
			} else {
				sc.timedOut(err)
			}
			return
		}
		if s.closing.Load() || s.noKeepAlive.Load() {
			req.close = true // say so in this last answer
		}
		if req.path == "/verify" {
			q = authz.Query{
				RawQuery:      req.rawQuery,
				Cookies:       req.cookies,
				OriginalURI:   authz.OriginalURI(req.origURI, req.origURL, req.forwardedURI),
				Host:          s.d.RequestHost(req.forwardedHost, req.origURL, req.host),
				Authorization: req.authorization,
			}
			sc.writeAnswer(s.d.Decide(s.ctx, &q), req)
		} else {
			if err := sc.fallback(req); err != nil {
				return
			}
			// The fallback's watch on the peer moved the read deadline.
			deadline = time.Time{}
		}
		if req.close {
			return // the deferred flush sends the answer
		}
		if !sc.served.Load() {
			sc.served.Store(true)
		}
		sc.busy.Store(false)
	}
}

// timedOut counts a connection closed because a request did not come
// whole within ReadHeaderTimeout (not a drain's wake-up).
func (sc *serverConn) timedOut(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !sc.s.closing.Load() && !sc.s.noKeepAlive.Load() {
		sc.s.m.readHeaderTimeout.Inc()
	}
}

// headerBuffered reports whether the next request's header is all in br,
// so reading it cannot block.
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlf2)
}

var crlf2 = []byte("\r\n\r\n")

// flushingReader reads from the connection after sending any buffered
// answers, so a client that pipelines never waits on an answer authz has
// already written.
type flushingReader struct{ sc *serverConn }

func (r flushingReader) Read(p []byte) (int, error) {
	if r.sc.bw.Buffered() > 0 {
		if err := r.sc.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return r.sc.c.Read(p)
}

// readRequest parses one request's line, header and (discarded or
// buffered) body.
//
// Where net/http's ReadRequest would read a request differently, or where
// two readers could pick different values, it refuses (FuzzParser checks
// this against http.ReadRequest): lines end in CRLF, never a bare LF;
// methods are tokens without lower-case letters; the target is origin-form
// with valid %-escapes in its path; Content-Length is digits only; Host,
// Authorization and the X-Original-* / X-Forwarded-* headers /verify reads
// come at most once.
func (sc *serverConn) readRequest() (*request, error) {
	budget := sc.s.cfg.MaxHeaderBytes
	line, err := sc.readLine(&budget)
	if err != nil {
		return nil, err
	}
	req := &sc.req
	*req = request{cookies: req.cookies[:0]}
	// METHOD SP target SP HTTP/1.x
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, errBadRequest
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return nil, errBadRequest
	}
	method, target, proto := line[:sp1], rest[:sp2], rest[sp2+1:]
	if !isMethod(method) || target[0] != '/' || !validTarget(target) {
		return nil, errBadRequest
	}
	switch string(proto) {
	case "HTTP/1.1":
		req.minor = 1
	case "HTTP/1.0":
		req.minor = 0
		req.close = true
	default:
		return nil, errBadRequest
	}
	// Every value a verify request needs is copied into one arena and
	// turned into one string at the end: one allocation per request
	// instead of one per value. (ReadSlice's lines do not survive the next
	// read, so they must be copied somewhere.)
	arena := append(sc.arena[:0], method...)
	arena = append(arena, target...)
	spans := sc.spans[:0]
	var seen uint
	mark := func(kind int, v []byte) bool {
		if kind != spanCookie {
			if seen&(1<<kind) != 0 {
				return false
			}
			seen |= 1 << kind
		}
		spans = append(spans, span{kind, len(arena), len(arena) + len(v)})
		arena = append(arena, v...)
		return true
	}
	targetEnd := len(arena)
	path, _, _ := bytes.Cut(target, []byte{'?'})
	full := string(path) != "/verify" // the fallback gets every header
	if full {
		req.header = make(http.Header)
	}
	sawCL := false
	for {
		line, err := sc.readLine(&budget)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			// No name, or whitespace before the colon (a smuggling
			// trick), or a folded continuation line.
			return nil, errBadRequest
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		if !validFieldValue(value) {
			return nil, errBadRequest
		}
		kind := -1
		switch {
		case asciiEqualFold(name, "cookie"):
			kind = spanCookie
		case asciiEqualFold(name, "x-original-uri"):
			kind = spanOrigURI
		case asciiEqualFold(name, "x-original-url"):
			kind = spanOrigURL
		case asciiEqualFold(name, "x-forwarded-uri"):
			kind = spanForwardedURI
		case asciiEqualFold(name, "host"):
			kind = spanHost
		case asciiEqualFold(name, "x-forwarded-host"):
			kind = spanForwardedHost
		case asciiEqualFold(name, "authorization"):
			kind = spanAuthorization
		case asciiEqualFold(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || sawCL && n != req.contentLength {
				return nil, errBadRequest
			}
			sawCL, req.contentLength = true, n
		case asciiEqualFold(name, "transfer-encoding"):
			return nil, errChunked
		case asciiEqualFold(name, "connection"):
			if tokenListHas(value, "close") {
				req.close = true
			} else if req.minor == 0 && tokenListHas(value, "keep-alive") {
				req.close = false
			}
		}
		if kind >= 0 && !mark(kind, value) {
			return nil, errBadRequest // a second copy of a single-valued header
		}
		if full {
			k := http.CanonicalHeaderKey(string(name))
			req.header[k] = append(req.header[k], string(value))
		}
	}
	if req.contentLength > maxBody {
		return nil, errBodyTooBig
	}
	all := string(arena)
	sc.arena, sc.spans = arena, spans
	req.method, req.target = all[:len(method)], all[len(method):targetEnd]
	req.path, req.rawQuery, _ = cutString(req.target, '?')
	for _, sp := range spans {
		v := all[sp.from:sp.to]
		switch sp.kind {
		case spanCookie:
			req.cookies = append(req.cookies, v)
		case spanOrigURI:
			req.origURI = v
		case spanOrigURL:
			req.origURL = v
		case spanForwardedURI:
			req.forwardedURI = v
		case spanHost:
			req.host = v
		case spanForwardedHost:
			req.forwardedHost = v
		case spanAuthorization:
			req.authorization = v
		}
	}
	return req, nil
}

// parseContentLength reads a Content-Length value: digits only (no sign,
// no spaces, no underscores), as net/http reads it.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// span locates a header value in a request's arena.
type span struct{ kind, from, to int }

const (
	spanCookie = iota
	spanOrigURI
	spanOrigURL
	spanForwardedURI
	spanHost
	spanForwardedHost
	spanAuthorization
)

// readLine returns one header line without its CRLF, charging it to budget.
// A line ending in a bare LF is refused: net/http reads it as a line end,
// other parsers in front of authz may not, and Nginx never sends one.
func (sc *serverConn) readLine(budget *int) ([]byte, error) {
	line, err := sc.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errHeaderTooBig
	}
	if err != nil {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			return nil, errBadRequest // a request cut short
		}
		return nil, err
	}
	if *budget -= len(line); *budget < 0 {
		return nil, errHeaderTooBig
	}
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, errBadRequest
	}
	return line[:n-2], nil
}

// readBody reads req's body: dropped for /verify (Nginx strips the body
// of auth subrequests; a client talking to authz directly may send one),
// kept in req.body for the fallback.
func (sc *serverConn) readBody(req *request) error {
	if req.path == "/verify" {
		_, err := sc.br.Discard(int(req.contentLength))
		return err
	}
	req.body = make([]byte, req.contentLength)
	_, err := io.ReadFull(sc.br, req.body)
	return err
}

// writeAnswer writes a verify answer: status, identity headers, no body.
func (sc *serverConn) writeAnswer(a authz.Answer, req *request) {
	status := a.Reason.Status()
	w := sc.bw
	w.WriteString(statusLine(status))
	w.Write(sc.s.dateHeader())
	switch status {
	case http.StatusOK:
		writeHeader(w, sc.s.userHeader, a.Session.User)
		for _, h := range a.Session.Headers {
			writeHeader(w, h.Name, h.Value[0])
		}
		if a.AccessToken != "" {
			writeHeader(w, authz.AccessTokenHeader, a.AccessToken)
		}
	case http.StatusUnauthorized:
		if a.Reason.Bearer() {
			writeHeader(w, "WWW-Authenticate", authz.BearerChallenge)
		} else {
			writeHeader(w, authz.RedirectHeader, a.Redirect)
		}
	case http.StatusServiceUnavailable:
		w.WriteString("Retry-After: 1\r\n")
	}
	if req.close {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("Content-Length: 0\r\n\r\n")
}

func writeHeader(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	w.WriteString(": ")
	w.WriteString(value)
	w.WriteString("\r\n")
}

func (sc *serverConn) writeSimple(status int, connection string) {
	w := sc.bw
	w.WriteString(statusLine(status))
	w.Write(sc.s.dateHeader())
	if connection != "" {
		w.WriteString("Connection: " + connection + "\r\n")
	}
	w.WriteString("Content-Length: 0\r\n\r\n")
}

// fallback runs the fallback handler with a buffered response. The
// request's context ends when the client closes the connection (or at a
// forced shutdown), as net/http's does: work done for a client that has
// left, such as a user-wide logout walk, stops.
func (sc *serverConn) fallback(req *request) error {
	ctx, cancel := context.WithCancel(sc.s.ctx)
	defer cancel()
	var watch *peerWatch
	if sc.br.Buffered() == 0 {
		// Nothing more has come: watch the connection while the handler
		// runs. (With more buffered, a pipelined request follows: the
		// client is still there as far as anyone can tell.) Answers to
		// requests pipelined before it go first, as before any read that
		// may block.
		if err := sc.bw.Flush(); err != nil {
			return err
		}
		watch = watchPeer(sc.c, cancel)
		defer watch.stop() // also when the handler panics
	}
	r, err := http.NewRequestWithContext(ctx, req.method, req.target, bytes.NewReader(req.body))
	if err != nil {
		watch.stop()
		sc.writeSimple(http.StatusBadRequest, "close")
		sc.bw.Flush()
		return err
	}
	r.RequestURI = req.target
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1."+strconv.Itoa(req.minor), 1, req.minor
	r.Header = req.header
	r.Host = req.header.Get("Host")
	r.ContentLength = req.contentLength
	if ra := sc.c.RemoteAddr(); ra != nil { // nil: a Unix socket's unnamed peer
		r.RemoteAddr = ra.String()
	}
	r.Close = req.close
	rw := &bufferedResponse{h: make(http.Header)}
	sc.s.fallback.ServeHTTP(rw, r)
	if watch.stop() {
		// The watch read the first byte of a next request off the
		// connection: rather than lose step, answer and close.
		req.close = true
	}
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	w := sc.bw
	w.WriteString(statusLine(rw.status))
	w.Write(sc.s.dateHeader())
	if rw.h.Get("Content-Type") == "" && rw.body.Len() > 0 {
		rw.h.Set("Content-Type", http.DetectContentType(rw.body.Bytes()))
	}
	rw.h.Del("Content-Length")
	rw.h.Del("Connection")
	rw.h.Del("Transfer-Encoding")
	if err := rw.h.Write(w); err != nil {
		return err
	}
	if req.close {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("Content-Length: " + strconv.Itoa(rw.body.Len()) + "\r\n\r\n")
	if req.method != http.MethodHead {
		w.Write(rw.body.Bytes())
	}
	return nil
}

// peerWatch reads from a connection while its request is handled, as
// net/http's background read does, to learn that the client has gone: a
// read that ends in EOF or an error cancels the request's context. Only
// fallback requests are watched (a goroutine and three deadline changes
// each); /verify answers within the Redis timeout and is never worth it.
type peerWatch struct {
	c       net.Conn
	done    chan struct{}
	mu      sync.Mutex
	stopped bool
	got     bool // the read returned a byte (set before done closes)
}

// watchPeer starts watching c, calling cancel when the peer closes or the
// connection fails. Nothing may read c until stop returns.
func watchPeer(c net.Conn, cancel context.CancelFunc) *peerWatch {
	w := &peerWatch{c: c, done: make(chan struct{})}
	// The handler may run longer than any deadline armed for the read.
	c.SetReadDeadline(time.Time{})
	go func() {
		defer close(w.done)
		var b [1]byte
		for {
			n, err := c.Read(b[:])
			if n > 0 {
				w.got = true
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				w.mu.Lock()
				stopped := w.stopped
				if !stopped {
					// A drain's wake-up that raced with the request's
					// start, not the client leaving: keep watching.
					c.SetReadDeadline(time.Time{})
				}
				w.mu.Unlock()
				if !stopped {
					continue
				}
			}
			cancel()
			return
		}
	}()
	return w
}

// stop ends the watch and reports whether it read a byte of a next
// request, which then is lost to the connection's reader. It may be
// called more than once, and on a nil watch (none started).
func (w *peerWatch) stop() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	if !w.stopped {
		w.stopped = true
		w.c.SetReadDeadline(aLongTimeAgo)
	}
	w.mu.Unlock()
	<-w.done
	return w.got
}

// aLongTimeAgo is a read deadline in the past: a blocked read returns at
// once.
var aLongTimeAgo = time.Unix(1, 0)

// bufferedResponse collects a fallback handler's answer.
type bufferedResponse struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.h }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

var statusLines sync.Map // int -> string

func statusLine(code int) string {
	if l, ok := statusLines.Load(code); ok {
		return l.(string)
	}
	text := http.StatusText(code)
	if text == "" {
		text = "Status " + strconv.Itoa(code)
	}
	l := "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
	statusLines.Store(code, l)
	return l
}

// dateLine is the Date header, formatted once a second.
type dateLine struct {
	sec  int64
	line []byte
}

func (s *Server) dateHeader() []byte {
	now := time.Now()
	if d := s.date.Load(); d != nil && d.sec == now.Unix() {
		return d.line
	}
	d := &dateLine{sec: now.Unix(), line: []byte("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")}
	s.date.Store(d)
	return d.line
}

func cutString(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// isToken reports whether b is an HTTP token (RFC 9110 tchar).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tchar[c] {
			return false
		}
	}
	return true
}

var tchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isMethod reports whether b is a method token without lower-case letters:
// methods are case-sensitive, and "get" is no GET.
func isMethod(b []byte) bool {
	for _, c := range b {
		if 'a' <= c && c <= 'z' {
			return false
		}
	}
	return isToken(b)
}

// validTarget accepts the visible ASCII an origin-form target may hold,
// with every '%' in its path starting an escape (net/http refuses a path
// it cannot unescape).
func validTarget(b []byte) bool {
	inPath := true
	for i, c := range b {
		if c <= 0x20 || c >= 0x7f {
			return false
		}
		switch {
		case c == '?':
			inPath = false
		case c == '%' && inPath:
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validFieldValue refuses control characters other than tab.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// tokenListHas reports whether a comma-separated header value lists tok.
func tokenListHas(v []byte, tok string) bool {
	for len(v) > 0 {
		var part []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			part, v = v, nil
		}
		if asciiEqualFold(bytes.Trim(part, " \t"), tok) {
			return true
		}
	}
	return false
}
