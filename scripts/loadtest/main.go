// Command loadtest holds the small helpers scripts/loadtest.sh needs:
//
//	loadtest ports N               print N free 127.0.0.1 TCP ports, one a line
//	loadtest sign SID SECRET       print the express-session cookie value for SID
//	loadtest hello ADDR            serve the baseline handler of scenario (d)
//	loadtest cs-cookie SECRET NAME JSON
//	                               print a client-sessions 0.8 cookie value for
//	                               cookieName NAME holding the session JSON,
//	                               created now, valid for a day (scenario (g))
//
// hello is the floor authz is compared with: Go's net/http with a handler
// that does nothing but answer 200 with one header and an empty body (what
// an authz "allowed" answer looks like on the wire, minus the work).
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/authz/authz/authz"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

const usage = "usage: loadtest ports N | sign SID SECRET | hello ADDR | cs-cookie SECRET NAME JSON"

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf(usage)
	}
	switch cmd, args := args[0], args[1:]; {
	case cmd == "ports" && len(args) == 1:
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("ports: want a count from 1 to 64, got %q", args[0])
		}
		return ports(n)
	case cmd == "sign" && len(args) == 2:
		fmt.Println(authz.Sign(args[0], args[1]))
		return nil
	case cmd == "hello" && len(args) == 1:
		return hello(args[0])
	case cmd == "cs-cookie" && len(args) == 3:
		v, err := csCookie(args[0], args[1], args[2], time.Now(), 24*time.Hour)
		if err != nil {
			return err
		}
		fmt.Println(v)
		return nil
	}
	return fmt.Errorf(usage)
}

// ports holds all n listeners open at once so the ports are distinct, then
// releases them for the servers the script starts next.
func ports(n int) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

var user = []string{"alice"}

func hello(addr string) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["X-Auth-User"] = user
		w.WriteHeader(http.StatusOK)
	})
	return (&http.Server{Addr: addr, Handler: h}).ListenAndServe()
}

// csCookie makes the cookie value client-sessions 0.8 writes for a session
// of content (JSON text of an object) under cookieName name, keys derived
// from secret as the library derives them (its defaults: aes256, sha256), a
// fresh random IV, createdAt now and the given duration.
func csCookie(secret, name, content string, now time.Time, duration time.Duration) (string, error) {
	if name == "" || strings.Contains(name, "=") {
		return "", fmt.Errorf("cs-cookie: cookie name %q: want a name without \"=\"", name)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(content), &obj); err != nil || obj == nil {
		return "", fmt.Errorf("cs-cookie: content must be a JSON object: %q", content)
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(iv); err != nil {
		return "", fmt.Errorf("cs-cookie: reading a random IV: %w", err)
	}
	return encodeClientSessions(secret, name, content, iv, now.UnixMilli(), duration.Milliseconds())
}

// encodeClientSessions is the library's encode with a given IV and times:
// b64url(iv) "." b64url(ciphertext) "." createdAt "." duration "."
// b64url(mac), unpadded base64url; plaintext name "=" content, AES-256-CBC
// with PKCS#7 padding; the HMAC-SHA256 covers the IV bytes, ".", the
// ciphertext bytes, ".", createdAt, ".", duration (decimal text).
func encodeClientSessions(secret, name, content string, iv []byte, createdAt, duration int64) (string, error) {
	if len(iv) != aes.BlockSize {
		return "", fmt.Errorf("cs-cookie: IV of %d bytes, want %d", len(iv), aes.BlockSize)
	}
	block, err := aes.NewCipher(deriveKey(secret, "cookiesession-encryption"))
	if err != nil {
		return "", fmt.Errorf("cs-cookie: %w", err)
	}
	pt := []byte(name + "=" + content)
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	for range pad {
		pt = append(pt, byte(pad))
	}
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
	c, d := strconv.FormatInt(createdAt, 10), strconv.FormatInt(duration, 10)
	mac := hmac.New(sha256.New, deriveKey(secret, "cookiesession-signature"))
	mac.Write(iv)
	mac.Write([]byte("."))
	mac.Write(ct)
	mac.Write([]byte("." + c + "." + d))
	b := base64.RawURLEncoding.EncodeToString
	return b(iv) + "." + b(ct) + "." + c + "." + d + "." + b(mac.Sum(nil)), nil
}

// deriveKey is the library's key derivation: HMAC-SHA256(secret, label).
func deriveKey(secret, label string) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(label))
	return h.Sum(nil)
}
