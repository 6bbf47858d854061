package logout

import (
	"errors"
	"strings"
	"testing"
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
