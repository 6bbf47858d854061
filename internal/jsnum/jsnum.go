// Package jsnum writes a JSON number as JavaScript's String(number) does,
// so that ids read from a session (authz) and from a logout event (logout)
// compare as the Node app that wrote both sees them: 1e2, 100.0 and 100 are
// all "100" there.
package jsnum

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// Format writes n as JavaScript's Number.prototype.toString does
// (ECMA-262 Number::toString, radix 10), from the shortest digits that
// round-trip, as V8 picks them. ok is false for a number out of the double
// range (JSON.parse makes it Infinity) or text that is not a number.
func Format(n json.Number) (string, bool) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false
	}
	if f == 0 {
		return "0", true // -0 too
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // [-]d[.ddd]e±xx
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, p := len(digits), x+1 // value = 0.digits × 10^p
	var out string
	switch {
	case k <= p && p <= 21:
		out = digits + strings.Repeat("0", p-k)
	case 0 < p && p <= 21:
		out = digits[:p] + "." + digits[p:]
	case -6 < p && p <= 0:
		out = "0." + strings.Repeat("0", -p) + digits
	default:
		es := "+"
		if p-1 < 0 {
			es = "-"
		}
		out = digits[:1]
		if k > 1 {
			out += "." + digits[1:]
		}
		out += "e" + es + strconv.Itoa(abs(p-1))
	}
	return sign + out, true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
