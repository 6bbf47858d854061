// Package frontdoor is the narrow HTTP/1.1 server --listen uses for
// Nginx's auth subrequests (Server), and the connection cap both it and
// --stdlib-http's net/http server apply (ConnState).
//
// It knows nothing of sessions: a Decider (authz.Verifier) decides, and
// the server parses the request into an authz.Query and writes the
// authz.Answer back as the answer contract says (README.md, "The answer
// contract"). The server's own settings come in a Config and its series
// go to a prometheus.Registerer (NewMetrics), so the decider's fields
// stay its own.
package frontdoor
