package keyscan

import "testing"

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{
		"sess:":              "sess:",
		"sessions:[acme]:":   `sessions:\[acme\]:`,
		"a*b?c":              `a\*b\?c`,
		`back\slash:`:        `back\\slash:`,
		"sessions:{tenant}:": "sessions:{tenant}:",
	} {
		if got := GlobEscape(in); got != want {
			t.Errorf("GlobEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
