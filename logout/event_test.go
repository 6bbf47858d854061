package logout

import (
	"errors"
	"testing"
)

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
