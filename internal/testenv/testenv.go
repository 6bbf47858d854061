// Package testenv starts the real processes tests run against (redis-server,
// nginx, authz) on free loopback ports, and stops them when the test ends.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FreePort returns a loopback port nobody listens on right now, and never
// the same port twice in one test binary, nor, for ten minutes, to another
// test binary: go test runs packages in parallel, and two of them could
// otherwise both find a port free and both try to bind it.
//
// The port comes from below the kernel's ephemeral range. A port from
// that range (what listening on port 0 gives) can be taken as the source
// port of an outgoing connection before the server meant to get it binds
// it, and parallel tests open many connections.
func FreePort(t testing.TB) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	lo, hi := 10000, ephemeralStart()
	if hi-lo < 1000 {
		// An unusual ephemeral range: let the kernel choose after all.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find free port: %v", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	for range 1000 {
		p := lo + rand.IntN(hi-lo)
		if ports.given[p] || !reservePort(p) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		ports.given[p] = true
		return p
	}
	t.Fatalf("no free loopback port in [%d, %d)", lo, hi)
	return 0
}

// reservePort claims p across test processes with a file created
// exclusively; a claim older than ten minutes has been given up.
func reservePort(p int) bool {
	dir := filepath.Join(os.TempDir(), "authz-test-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return true // no reservations possible: fall back to luck
	}
	name := filepath.Join(dir, strconv.Itoa(p))
	for range 2 {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return true
		}
		fi, serr := os.Stat(name)
		if serr != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			return false
		}
		os.Remove(name)
	}
	return false
}

var ports = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// ephemeralStart is the first port the kernel picks source ports from:
// Linux says so in /proc; elsewhere 32768 is at or below the usual start.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// WaitFor polls cond until it returns true or the deadline passes.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Process is a child process with its output captured for failure reports.
type Process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs name with args; the process is killed when the test ends and
// its output is printed if the test failed.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return StartCmd(t, name, exec.Command(name, args...))
}

// StartCmd is Start for a command the caller prepared (its environment or
// directory set); name labels its output.
func StartCmd(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if p.cmd.SysProcAttr == nil {
		// If the test binary is killed outright, its servers die with it
		// rather than linger on their ports.
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v (is it installed? .ci/run installs it)", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// waitHTTP waits until GET url answers (with status want, or any status if
// want is 0), failing the test at once if the process exits first.
func (p *Process) waitHTTP(t testing.TB, name, url string, within time.Duration, want int) {
	t.Helper()
	c := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	WaitFor(t, within, name+" to answer "+url, func() bool {
		if p.Exited() {
			t.Fatalf("%s exited before it was ready: %v\n%s", name, p.Wait(), p.Output())
		}
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return want == 0 || resp.StatusCode == want
	})
}

// Output is what the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait blocks until the process has exited and returns how it ended: nil
// for exit status 0, an *exec.ExitError otherwise.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Stop terminates the process: SIGTERM, then SIGKILL after 5s.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(terminate)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill ends the process at once.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Redis is a redis-server started for one test.
type Redis struct {
	Addr string
	port int
	t    testing.TB
	proc *Process
	args []string // more redis-server arguments, kept across restarts
	// dir is the server's working directory. A replica writes the RDB of
	// its full sync there, and any server loads a dump.rdb it finds there
	// at start: in the package directory, one test's data would turn up
	// in another's Redis.
	dir string
}

// StartRedis starts a redis-server with no persistence on a free port.
func StartRedis(t testing.TB) *Redis { return StartRedisArgs(t) }

// StartRedisArgs is StartRedis with more redis-server arguments, such as
// "--replicaof" or "--cluster-enabled", "yes".
func StartRedisArgs(t testing.TB, args ...string) *Redis {
	t.Helper()
	r := &Redis{port: FreePort(t), t: t, args: args, dir: t.TempDir()}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	r.Start()
	return r
}

// Start (re)starts the server on its port and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", r.dir}, r.args...)
	r.proc = Start(r.t, "redis-server", args...)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	WaitFor(r.t, 10*time.Second, "redis-server to answer on "+r.Addr, func() bool {
		if r.proc.Exited() {
			r.t.Fatalf("redis-server exited before it was ready: %v\n%s", r.proc.Wait(), r.proc.Output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	})
}

// Stop shuts the server down (SIGTERM) and waits for it to exit.
func (r *Redis) Stop() { r.proc.Stop() }

// Kill ends the server at once (SIGKILL), as a crash or a power cut would.
func (r *Redis) Kill() { r.proc.Kill() }

// Signal sends sig to the server: SIGSTOP freezes it (connections stay
// open, nothing is answered), SIGCONT thaws it. A frozen server is thawed
// when the test ends, so that it can be stopped.
func (r *Redis) Signal(sig os.Signal) {
	r.t.Helper()
	if err := r.proc.Signal(sig); err != nil {
		r.t.Fatalf("signal redis-server: %v", err)
	}
	if sig == syscall.SIGSTOP {
		p := r.proc
		r.t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
	}
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return fmt.Sprintf("redis://%s/0", r.Addr) }

// Client returns a go-redis client for the server, closed with the test.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// Calls is how many times the server has run cmd (as INFO commandstats
// names it: "get", "scan") since it started: a test's way to tell whether
// a read reached Redis at all.
func (r *Redis) Calls(cmd string) int {
	r.t.Helper()
	n, _ := r.stat("commandstats", "cmdstat_"+cmd+":calls=")
	return int(n)
}

// NetOutput is how many bytes the server has sent its clients since it
// started: a test's way to tell whether a value crossed the network.
func (r *Redis) NetOutput() int64 {
	r.t.Helper()
	n, ok := r.stat("stats", "total_net_output_bytes:")
	if !ok {
		r.t.Fatal("no total_net_output_bytes in INFO stats")
	}
	return n
}

// stat is the number after prefix in a line of INFO section, and whether
// there was one.
func (r *Redis) stat(section, prefix string) (int64, bool) {
	r.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		r.t.Fatalf("INFO %s from redis-server %s: %v", section, r.Addr, err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			num, _, _ := strings.Cut(rest, ",")
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				r.t.Fatalf("INFO %s from redis-server %s: %q: %v", section, r.Addr, line, err)
			}
			return n, true
		}
	}
	return 0, false
}

// Send writes req, bytes as they are, to a fresh connection to addr and
// returns the connection, which has 5 s for the whole exchange and is
// closed when the test ends.
func Send(t testing.TB, addr, req string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// RawHead sends req with Send and returns the head of the answer as it
// came over the wire: the status line through the blank line.
func RawHead(t testing.TB, addr, req string) []byte {
	t.Helper()
	c := Send(t, addr, req)
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if err != nil {
			t.Fatalf("reading the answer: %v after %q", err, head)
		}
	}
	return head
}
