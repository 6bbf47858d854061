package testenv

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SessionSecret is the express-session secret StartAuthz gives authz, so
// tests can sign cookies with authz.Sign(sid, testenv.SessionSecret).
const SessionSecret = "testenv keyboard cat"

// The authz binary is built once per test binary, into a directory that
// Main removes when the tests are done.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Main runs the tests of a package that uses BuildAuthz or StartAuthz and
// removes the built binary afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// Returning from TestMain lets the test wrapper exit with m.Run's code.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "testenv-authz-")
	if err != nil {
		// No test has run yet, so there is no *testing.T to fail.
		panic(err)
	}
	build.dir = dir
	m.Run()
	os.RemoveAll(dir)
}

// BuildAuthz builds ./cmd/authz the first time it is called in a test
// binary and returns the path of the binary. The package's TestMain must
// call Main.
func BuildAuthz(t testing.TB) string {
	t.Helper()
	if build.dir == "" {
		t.Fatal("testenv.BuildAuthz: the package's TestMain must call testenv.Main")
	}
	root := RepoRoot(t)
	build.once.Do(func() {
		bin := filepath.Join(build.dir, "authz")
		// AUTHZ_BUILD_FLAGS=-race builds the binary the e2e stories run
		// with the race detector (slower; not the default).
		args := append([]string{"build", "-o", bin}, strings.Fields(os.Getenv("AUTHZ_BUILD_FLAGS"))...)
		cmd := exec.Command("go", append(args, "./cmd/authz")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = &buildError{err: err, out: out}
			return
		}
		build.path = bin
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string {
	return "go build ./cmd/authz: " + e.err.Error() + "\n" + string(e.out)
}

// Authz is an "authz serve" process started for one test.
type Authz struct {
	*Process
	// Addr answers /verify, /healthz and /readyz; Nginx's AUTHZ_ADDR.
	Addr string
	// MetricsAddr answers /metrics, /healthz and /readyz.
	MetricsAddr string

	t    testing.TB
	bin  string
	args []string
}

// StartAuthz runs "authz serve" against the Redis at redisURL with
// SessionSecret, on free loopback ports, and waits until it answers
// /healthz. extraArgs are appended to the command line, so they can add
// flags such as --cache-ttl or --header.
func StartAuthz(t testing.TB, redisURL string, extraArgs ...string) *Authz {
	t.Helper()
	return startAuthz(t, redisURL, net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))), extraArgs)
}

// StartAuthzUnix is StartAuthz listening on the Unix socket at path
// (--listen unix:path); its Addr is then "unix:path", which is also how
// Nginx's upstream names it. It waits until the metrics listener answers
// /healthz: the socket accepts from before then.
func StartAuthzUnix(t testing.TB, redisURL, path string, extraArgs ...string) *Authz {
	t.Helper()
	return startAuthz(t, redisURL, "unix:"+path, extraArgs)
}

func startAuthz(t testing.TB, redisURL, listen string, extraArgs []string) *Authz {
	t.Helper()
	bin := BuildAuthz(t)
	a := &Authz{
		Addr:        listen,
		MetricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		t:           t,
		bin:         bin,
	}
	args := append([]string{"serve",
		"--listen", a.Addr,
		"--metrics-listen", a.MetricsAddr,
		"--redis-url", redisURL,
		"--session-secret", SessionSecret,
	}, extraArgs...)
	a.args = args
	a.start()
	return a
}

func (a *Authz) start() {
	a.t.Helper()
	a.Process = Start(a.t, a.bin, a.args...)
	addr := a.Addr
	if strings.HasPrefix(addr, "unix:") {
		addr = a.MetricsAddr
	}
	a.waitHTTP(a.t, "authz", "http://"+addr+"/healthz", 10*time.Second, http.StatusOK)
}

// Restart starts authz again, with the same flags on the same ports, once
// its process has ended (after a Signal or Kill), and waits until it
// answers /healthz: an instance coming back where Nginx expects it.
func (a *Authz) Restart() {
	a.t.Helper()
	if !a.Exited() {
		a.t.Fatal("testenv: Restart of an authz that is still running")
	}
	a.start()
}
