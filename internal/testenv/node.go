package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Node is a Node.js service of examples/ ("node server.js") started for one
// test.
type Node struct {
	*Process
	// Addr is host:port it listens on, the form Nginx's upstream blocks
	// want.
	Addr string
}

// URL is the address of uri (a path with an optional query) on the service
// itself, not through nginx.
func (n *Node) URL(uri string) string { return "http://" + n.Addr + uri }

// StartNode runs "node server.js" in dir, a directory relative to the
// repository root such as "examples/express-login", after installing its
// dependencies (NpmCI). Its environment is PATH, HOME, PORT (a free
// loopback port), HOST and env ("NAME=value", later ones win), nothing else,
// so a developer's own SESSION_SECRET or NODE_OPTIONS cannot change what a
// test runs. It waits
// until the service answers HTTP: the examples listen only once their Redis
// client is connected, so an answer means ready.
func StartNode(t testing.TB, dir string, env ...string) *Node {
	t.Helper()
	abs := filepath.Join(RepoRoot(t), dir)
	NpmCI(t, abs)
	n := &Node{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))}
	cmd := exec.Command("node", "server.js")
	cmd.Dir = abs
	_, port, _ := net.SplitHostPort(n.Addr)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PORT=" + port, "HOST=127.0.0.1"}, env...)
	n.Process = StartCmd(t, "node "+dir, cmd)

	n.waitHTTP(t, dir, n.URL("/"), 20*time.Second, 0)
	return n
}

// npmStamp is the file in node_modules that holds the SHA-256 of the
// package-lock.json it was installed from. scripts/demo.sh writes and
// reads the same file.
const npmStamp = ".authz-npm-ci"

// npmInstalls makes NpmCI run npm at most once per directory per test
// binary; parallel tests wait for the first.
var npmInstalls sync.Map // absolute dir -> func() error

// NpmCI installs the dependencies locked in dir/package-lock.json with
// "npm ci", unless node_modules was installed from that very lock file
// already. npm ci deletes node_modules first, so two installs into one
// directory at once (two test binaries, or a test and the demo) would break
// each other: it holds an exclusive lock on a file in the temporary
// directory while it checks and installs.
func NpmCI(t testing.TB, dir string) {
	t.Helper()
	f, _ := npmInstalls.LoadOrStore(dir, sync.OnceValue(func() error { return npmCI(dir) }))
	if err := f.(func() error)(); err != nil {
		t.Fatalf("npm ci in %s: %v", dir, err)
	}
}

func npmCI(dir string) error {
	lockFile, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(lockFile)
	want := hex.EncodeToString(sum[:])

	dirSum := sha256.Sum256([]byte(dir))
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "authz-npm-ci-"+hex.EncodeToString(dirSum[:8])+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close() // closing releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}

	stamp := filepath.Join(dir, "node_modules", npmStamp)
	got, err := os.ReadFile(stamp)
	if err == nil && strings.TrimSpace(string(got)) == want {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Not --silent: it would hide npm's own errors too. Install scripts
	// are off; none of the examples' dependencies needs one.
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return errors.New(err.Error() + "\n" + string(out))
	}
	return os.WriteFile(stamp, []byte(want+"\n"), 0o644)
}
