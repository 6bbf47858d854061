package jsnum

import (
	"encoding/json"
	"testing"
)

func TestFormat(t *testing.T) {
	for in, want := range map[string]string{
		"1": "1", "-1": "-1", "1.5": "1.5", "1e21": "1e+21", "1.5e300": "1.5e+300", "123e-20": "1.23e-18",
		"0.000001": "0.000001", "0.0000001": "1e-7", "-0.0": "0", "9007199254740993": "9007199254740992",
		"1e-400": "0", "123456789012345680000": "123456789012345680000",
		"1e2": "100", "100.0": "100", "12345678901234567891": "12345678901234567000",
	} {
		if got, ok := Format(json.Number(in)); !ok || got != want {
			t.Errorf("Format(%s) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"1e400", "-1e400", "", "x"} {
		if got, ok := Format(json.Number(in)); ok {
			t.Errorf("Format(%q) = %q, true; want not ok", in, got)
		}
	}
}
