package logout

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// hash64 is a token hash as token events carry it.
const hash64 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParse(t *testing.T) {
	long := make([]byte, 600)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		in   string
		want error
	}{
		{`{"v":1,"kind":"session","session":"abc","time":"2026-11-21T23:00:00Z"}`, nil},
		{`{"v":1,"kind":"user","user":"42","tenant":"acme","origin":"app"}`, nil},
		{`{"v":1,"kind":"token","token":"` + hash64 + `"}`, nil},
		{`{"v":1,"kind":"token"}`, ErrMissingID},
		{`{"v":1,"kind":"token","token":"azt_NotAHashButTheTokenItself0123456789abcdefgh"}`, ErrMissingID},
		{`{"v":1,"kind":"token","token":"` + strings.ToUpper(hash64) + `"}`, ErrMissingID},
		{`{"v":1,"kind":"token","session":"abc"}`, ErrMissingID},
		{`not json`, ErrNotJSON},
		{`{"v":2,"kind":"session","session":"abc"}`, ErrVersion},
		{`{"kind":"session","session":"abc"}`, ErrVersion},
		{`{"v":1,"kind":"device","session":"abc"}`, ErrKind},
		{`{"v":1,"kind":"session"}`, ErrMissingID},
		{`{"v":1,"kind":"user","session":"abc"}`, ErrMissingID},
		{`{"v":1,"kind":"session","session":42}`, ErrNotJSON},
		{`{"v":1,"kind":"user","user":1e400}`, ErrNotJSON}, // JSON.parse: Infinity, which no session holds
		{`{"v":1,"kind":"session","session":"` + string(long) + `"}`, ErrFieldTooBig},
		{`[]`, ErrNotJSON},
		{`null`, ErrVersion},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.in))
		if !errors.Is(err, tt.want) {
			t.Errorf("Parse(%s) = %v; want %v", tt.in, err, tt.want)
		}
	}
}

// TestParseWhatNodeWrites feeds Parse the events a Node producer writes
// without thinking about Go: time as Date.now() (a number), as
// Date.prototype.toString() or toUTCString(), a numeric user id. Each must
// apply; a time that cannot be read is left out (and counted by the
// subscriber), never a reason to drop the logout.
func TestParseWhatNodeWrites(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed (scripts/install-deps.sh installs it): %v", err)
	}
	script := `const d = new Date(Date.UTC(2026, 10, 21, 23, 0, 0, 123));
for (const time of [d.getTime(), d.toString(), d.toUTCString(), d.toISOString(), d.toJSON(), d]) {
  console.log(JSON.stringify({v: 1, kind: 'session', session: 'abc', time}));
}
console.log(JSON.stringify({v: 1, kind: 'user', user: 42, tenant: 'acme', time: d.getTime()}));`
	cmd := exec.Command(node, "-e", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TZ=Europe/Paris"} // toString writes local time
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 7 {
		t.Fatalf("node wrote %d events: %s", len(lines), out)
	}
	want := time.Date(2026, 11, 21, 23, 0, 0, 123e6, time.UTC)
	for i, l := range lines {
		e, ignored, err := Decode([]byte(l))
		if err != nil {
			t.Errorf("Decode(%s) = %v; a logout Node wrote was dropped", l, err)
			continue
		}
		// toString and toUTCString have whole seconds.
		if d := e.Time.Sub(want); d < -time.Second || d > time.Second || len(ignored) != 0 {
			t.Errorf("Decode(%s): time %v (ignored %v); want %v", l, e.Time, ignored, want)
		}
		if i == 6 && (e.User != "42" || e.Tenant != "acme") {
			t.Errorf("Decode(%s) = %+v; want user 42 in acme", l, e)
		}
	}
}

func TestDecodeLeavesOutWhatItCannotRead(t *testing.T) {
	tests := []struct {
		in      string
		ignored []string
		err     error
	}{
		{`{"v":1,"kind":"session","session":"a","time":"yesterday"}`, []string{"time"}, nil},
		{`{"v":1,"kind":"session","session":"a","time":true}`, []string{"time"}, nil},
		{`{"v":1,"kind":"session","session":"a","time":{}}`, []string{"time"}, nil},
		{`{"v":1,"kind":"session","session":"a","time":-5}`, []string{"time"}, nil},
		{`{"v":1,"kind":"session","session":"a","time":null,"origin":7}`, []string{"origin"}, nil},
		{`{"v":1,"kind":"session","session":"a","time":"2026-11-21T23:00:00"}`, nil, nil},
		{`{"v":1,"kind":"user","user":-1.5e3}`, nil, nil},
		// What names the logout stays strict.
		{`{"v":1,"kind":"user","user":{"id":1}}`, nil, ErrNotJSON},
		{`{"v":1,"kind":"user","user":true}`, nil, ErrNotJSON},
		{`{"v":1,"kind":"user","user":null}`, nil, ErrMissingID},
		{`{"v":1,"kind":"session","session":1}`, nil, ErrNotJSON},
		{`{"v":"1","kind":"session","session":"a"}`, nil, ErrNotJSON},
	}
	for _, tt := range tests {
		_, ignored, err := Decode([]byte(tt.in))
		if !errors.Is(err, tt.err) || strings.Join(ignored, ",") != strings.Join(tt.ignored, ",") {
			t.Errorf("Decode(%s) = ignored %v, %v; want %v, %v", tt.in, ignored, err, tt.ignored, tt.err)
		}
	}
}

// A time in milliseconds past 2262 (up to the 1e15 Parse accepts) is read
// as that instant: before, the milliseconds as nanoseconds overflowed.
func TestParseTimeMillisecondsFarAhead(t *testing.T) {
	for lit, want := range map[string]time.Time{
		"1e13":            time.UnixMilli(1e13),
		"1e15":            time.UnixMilli(1e15),
		"1732230000123.5": time.UnixMilli(1732230000123).Add(500 * time.Microsecond),
	} {
		e, err := Parse([]byte(`{"v":1,"kind":"session","session":"abc","time":` + lit + `}`))
		if err != nil {
			t.Fatalf("Parse(time %s): %v", lit, err)
		}
		if !e.Time.Equal(want) {
			t.Errorf("time %s = %v; want %v", lit, e.Time, want)
		}
	}
}
