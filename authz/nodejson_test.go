package authz

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/logout"
)

// nodeReads runs each stored value through what an Express app does with
// it: the bytes decoded as the Redis client decodes them (UTF-8, invalid
// sequences replaced), JSON.parse (connect-redis), express-session's
// Store.createSession, then authz's default user paths (passport.user,
// then user) read on the session it built. For each value: the user id as
// UTF-16 code units (nil: no user) and whether loading threw.
func nodeReads(t *testing.T, values [][]byte) (users [][]uint16, threw []bool) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed (scripts/install-deps.sh installs it): %v", err)
	}
	dir := filepath.Join(testenv.RepoRoot(t), "examples", "node-reader")
	testenv.NpmCI(t, dir)
	const script = `
const Store = require(process.argv[1] + '/node_modules/express-session/session/store.js');
const store = new Store();
let input = '';
process.stdin.on('data', d => input += d);
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(b64 => {
    try {
      const req = {sessionID: 'x'};
      store.createSession(req, JSON.parse(Buffer.from(b64, 'base64').toString('utf8')));
      let v;
      for (const path of [['passport', 'user'], ['user']]) {
        let cur = req.session;
        for (const seg of path) cur = cur === undefined || cur === null ? undefined : cur[seg];
        if (cur !== undefined && cur !== null) { v = cur; break; }
      }
      if (v !== null && typeof v === 'object') v = v.id;
      if (v === undefined || v === null || v === false || v === '') return {units: null};
      const s = String(v);
      const units = [];
      for (let i = 0; i < s.length; i++) units.push(s.charCodeAt(i));
      return {units};
    } catch (e) {
      return {threw: true};
    }
  });
  process.stdout.write(JSON.stringify(out));
});`
	in, _ := json.Marshal(values) // []byte marshals as base64
	cmd := exec.Command(node, "-e", script, dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res []struct {
		Units []uint16 `json:"units"`
		Threw bool     `json:"threw"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(values) {
		t.Fatalf("node answered %d results (%v): %s", len(res), err, out)
	}
	for _, r := range res {
		users = append(users, r.Units)
		threw = append(threw, r.Threw)
	}
	return users, threw
}

// TestSessionJSONReadAsNodeReadsIt compares authz's reading of stored
// sessions with a real Node's (JSON.parse and express-session, see
// nodeReads): wherever they disagree, authz must be the one that refuses.
// Before, trailing data after the object, a session without a cookie
// object, a lone surrogate and non-canonical numbers were all allowed
// under an id the app did not see.
func TestSessionJSONReadAsNodeReadsIt(t *testing.T) {
	const c = `"cookie":{"originalMaxAge":null,"path":"/"},`
	deep := `{` + c + `"passport":{"user":"alice"},"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`
	tests := []struct {
		name, json string
		// allow is what authz must answer: "" refuses.
		allow string
	}{
		{"plain", `{` + c + `"passport":{"user":"alice"}}`, "alice"},
		{"trailing brace", `{` + c + `"passport":{"user":"alice"}}}`, ""},
		{"trailing bracket", `{` + c + `"passport":{"user":"alice"}}]`, ""},
		{"trailing value", `{` + c + `"passport":{"user":"alice"}} {}`, ""},
		{"trailing junk", `{` + c + `"passport":{"user":"alice"}}x`, ""},
		{"trailing NUL", `{` + c + `"passport":{"user":"alice"}}` + "\x00", ""},
		{"trailing whitespace", `{` + c + `"passport":{"user":"alice"}}` + " \t\r\n", "alice"},
		{"leading whitespace", " \t\r\n{" + c + `"passport":{"user":"alice"}}`, "alice"},
		{"leading NBSP", "\u00a0{" + c + `"passport":{"user":"alice"}}`, ""},
		{"trailing U+2028", `{` + c + `"passport":{"user":"alice"}}` + "\u2028", ""},
		{"byte order mark", "\ufeff{" + c + `"passport":{"user":"alice"}}`, ""},
		{"duplicate key, last wins", `{` + c + `"passport":{"user":"mallory"},"passport":{"user":"alice"}}`, "alice"},
		{"duplicate key, last is null", `{` + c + `"passport":{"user":"alice","user":null}}`, ""},
		{"duplicate key, last is an object", `{` + c + `"passport":{"user":"alice"},"passport":{}}`, ""},
		{"duplicate id", `{` + c + `"passport":{"user":{"id":"mallory","id":"alice"}}}`, "alice"},
		{"escaped letters", `{` + c + `"passport":{"us\u0065r":"\u0061lice"}}`, "alice"},
		{"lone high surrogate", `{` + c + `"passport":{"user":"al\ud800ice"}}`, ""},
		{"lone low surrogate", `{` + c + `"passport":{"user":"\udc00"}}`, ""},
		{"surrogate pair", `{` + c + `"passport":{"user":"\ud83d\ude00"}}`, "\U0001F600"},
		{"invalid UTF-8", `{` + c + `"passport":{"user":"al` + "\xff" + `ice"}}`, ""},
		{"truncated UTF-8", `{` + c + `"passport":{"user":"al` + "\xe2\x82" + `"}}`, ""},
		{"overlong UTF-8", `{` + c + `"passport":{"user":"` + "\xc0\xaf" + `"}}`, ""},
		{"encoded U+FFFD", `{` + c + `"passport":{"user":"\ufffd"}}`, ""},
		{"big integer", `{` + c + `"passport":{"user":12345678901234567890}}`, "12345678901234567000"},
		{"exponent", `{` + c + `"passport":{"user":1e3}}`, "1000"},
		{"fraction zero", `{` + c + `"passport":{"user":1.0}}`, "1"},
		{"minus zero", `{` + c + `"passport":{"user":-0}}`, "0"},
		{"zero", `{` + c + `"passport":{"user":0}}`, "0"},
		{"1e21", `{` + c + `"passport":{"user":1e21}}`, "1e+21"},
		{"1e20", `{` + c + `"passport":{"user":100000000000000000000}}`, "100000000000000000000"},
		{"small", `{` + c + `"passport":{"user":1e-7}}`, "1e-7"},
		{"0.000001", `{` + c + `"passport":{"user":0.000001}}`, "0.000001"},
		{"negative fraction", `{` + c + `"passport":{"user":-123.456e-2}}`, "-1.23456"},
		{"denormal", `{` + c + `"passport":{"user":5e-324}}`, "5e-324"},
		{"0.1+", `{` + c + `"passport":{"user":0.30000000000000004}}`, "0.30000000000000004"},
		{"past the double range", `{` + c + `"passport":{"user":1e400}}`, ""},
		{"leading zero", `{` + c + `"passport":{"user":01}}`, ""},
		{"NaN", `{` + c + `"passport":{"user":NaN}}`, ""},
		{"single quotes", `{` + c + `"passport":{"user":'alice'}}`, ""},
		{"comment", `{` + c + `"passport":{"user":"alice"/**/}}`, ""},
		{"__proto__ at the top", `{` + c + `"__proto__":{"passport":{"user":"alice"}}}`, ""},
		{"__proto__ inside", `{` + c + `"passport":{"__proto__":{"user":"alice"}}}`, ""},
		{"constructor", `{` + c + `"passport":{"constructor":{"user":"alice"}}}`, ""},
		{"no cookie", `{"passport":{"user":"alice"}}`, ""},
		{"null cookie", `{"cookie":null,"passport":{"user":"alice"}}`, ""},
		{"string cookie", `{"cookie":"x","passport":{"user":"alice"}}`, ""},
		{"number cookie", `{"cookie":1,"passport":{"user":"alice"}}`, ""},
		{"empty cookie", `{"cookie":{},"passport":{"user":"alice"}}`, "alice"},
		{"array cookie", `{"cookie":[],"passport":{"user":"alice"}}`, "alice"},
		{"string maxAge", `{"cookie":{"maxAge":"1"},"passport":{"user":"alice"}}`, ""},
		{"true maxAge", `{"cookie":{"maxAge":true},"passport":{"user":"alice"}}`, ""},
		{"object maxAge", `{"cookie":{"maxAge":{}},"passport":{"user":"alice"}}`, ""},
		{"zero maxAge", `{"cookie":{"maxAge":0},"passport":{"user":"alice"}}`, "alice"},
		{"empty string maxAge", `{"cookie":{"maxAge":""},"passport":{"user":"alice"}}`, "alice"},
		{"deep nesting", deep, ""},
		{"array", `[{` + c + `"passport":{"user":"alice"}}]`, ""},
		{"string", `"alice"`, ""},
		{"null", `null`, ""},
		{"empty", ``, ""},
		{"user true", `{` + c + `"passport":{"user":true}}`, ""},
		{"user false", `{` + c + `"passport":{"user":false}}`, ""},
		{"user empty", `{` + c + `"passport":{"user":""}}`, ""},
		{"user object without id", `{` + c + `"passport":{"user":{"name":"alice"}}}`, ""},
		{"user array", `{` + c + `"passport":{"user":["alice"]}}`, ""},
		{"user key case", `{` + c + `"Passport":{"user":"alice"}}`, ""},
		{"fallback path", `{` + c + `"user":{"id":"bob"}}`, "bob"},
		{"passport not an object", `{` + c + `"passport":"alice","user":"bob"}`, "bob"},
	}
	values := make([][]byte, len(tests))
	for i, tt := range tests {
		values[i] = []byte(tt.json)
	}
	nodeUsers, threw := nodeReads(t, values)
	d := testDecoder()
	for i, tt := range tests {
		var got string
		s, err := d.decodeSession(values[i])
		if err == nil {
			got = s.User
		}
		node := string(utf16.Decode(nodeUsers[i]))
		if threw[i] {
			node = ""
		}
		if got != "" && !equalUnits(nodeUsers[i], got) || threw[i] && got != "" {
			t.Errorf("%s: authz allows %q where Node sees %q (threw %v)", tt.name, got, node, threw[i])
		}
		if got != tt.allow {
			t.Errorf("%s: authz reads %q (%v); want %q (Node sees %q, threw %v)", tt.name, got, err, tt.allow, node, threw[i])
		}
		if testing.Verbose() && got != node {
			t.Logf("%s: authz %q, Node %q (threw %v): authz refuses", tt.name, got, node, threw[i])
		}
	}
}

// equalUnits reports whether the UTF-16 code units Node read are s.
func equalUnits(units []uint16, s string) bool {
	want := utf16.Encode([]rune(s))
	if len(units) != len(want) {
		return false
	}
	for i := range units {
		if units[i] != want[i] {
			return false
		}
	}
	return true
}

// TestEventUserMatchesSessionUser: a kind:user logout event names a numeric
// user as the sessions do. Sessions format a number as JavaScript's String()
// (identity); an event keeping the literal text (1e2, 100.0, a long integer)
// would miss the cached allows of user "100" or "12345678901234567000".
func TestEventUserMatchesSessionUser(t *testing.T) {
	for _, lit := range []string{"1e2", "100.0", "12345678901234567891", "-0", "1.50"} {
		e, err := logout.Parse([]byte(`{"v":1,"kind":"user","user":` + lit + `}`))
		if err != nil {
			t.Fatalf("Parse(user %s): %v", lit, err)
		}
		want, err := identity(json.Number(lit))
		if err != nil {
			t.Fatalf("identity(%s): %v", lit, err)
		}
		if e.User != want {
			t.Errorf("event user %s = %q; the session's X-Auth-User is %q", lit, e.User, want)
		}
	}
}
