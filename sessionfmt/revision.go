package sessionfmt

import (
	"bytes"
	"encoding/json"
)

// Revision reads the session revision at path (dot-split segments, as
// authz's --revision-path) from content, a session as JSON text. A missing
// field, or a missing object on the way, is revision 0: sessions signed in
// before the login app wrote revisions, or for users never logged out. The
// field must be a JSON integer as JSON.stringify writes a JavaScript
// number (no fraction, no exponent, not negative, exact below 2^53); any
// other value, null and numeric strings included, is ErrInvalidContent, so
// a login app that stores the revision as text fails closed instead of
// passing every check.
//
// It runs once per session load (a cache miss), so it favours plain
// encoding/json over an allocation-free scanner.
func Revision(content []byte, path []string) (int64, error) {
	raw := json.RawMessage(content)
	for _, seg := range path {
		var obj map[string]json.RawMessage
		if !jsonObject(raw) {
			if len(bytes.TrimSpace(raw)) > 0 {
				// A scalar or array where an object was expected: the
				// revision cannot be there, and the session is not what
				// the configuration says.
				return 0, ErrInvalidContent
			}
			return 0, nil
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return 0, ErrInvalidContent
		}
		next, ok := obj[seg]
		if !ok {
			return 0, nil
		}
		raw = next
	}
	n, ok := jsInt(string(bytes.TrimSpace(raw)))
	if !ok {
		return 0, ErrInvalidContent
	}
	return n, nil
}
