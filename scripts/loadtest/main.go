// Command loadtest holds the small helpers scripts/loadtest.sh needs:
//
//	loadtest ports N               print N free 127.0.0.1 TCP ports, one a line
//	loadtest sign SID SECRET       print the express-session cookie value for SID
//	loadtest hello ADDR            serve the baseline handler of scenario (d)
//
// hello is the floor authz is compared with: Go's net/http with a handler
// that does nothing but answer 200 with one header and an empty body (what
// an authz "allowed" answer looks like on the wire, minus the work).
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/authz/authz/authz"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

const usage = "usage: loadtest ports N | sign SID SECRET | hello ADDR"

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
