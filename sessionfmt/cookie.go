package sessionfmt

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// The Node libraries disagree on how a Cookie header is read, and a
// signature covers the value as the library read it, so each format uses
// its own library's rules. Node joins several Cookie header lines with "; ",
// which is the same as reading each line on its own, first line first.

// findCookiesPkg returns the value of the first cookie called name as the
// "cookies" npm package's get does: the regular expression
// `(?:^|;) *NAME=([^;]*)`, so only spaces (not tabs) may precede the name,
// and the value is everything up to the next ";" with nothing trimmed or
// decoded. With stripQuote (cookies 0.9, cookie-session's) a value that
// starts with a double quote loses its first and last characters, as
// value.slice(1, -1) does; cookies 0.7 (client-sessions') keeps it whole.
func findCookiesPkg(lines []string, name string, stripQuote bool) (string, bool) {
	for _, line := range lines {
		for i := 0; i <= len(line); {
			// i is the start of the text after "^" or a ";".
			j := i
			for j < len(line) && line[j] == ' ' {
				j++
			}
			if strings.HasPrefix(line[j:], name) && j+len(name) < len(line) && line[j+len(name)] == '=' {
				v := line[j+len(name)+1:]
				if k := strings.IndexByte(v, ';'); k >= 0 {
					v = v[:k]
				}
				if stripQuote && len(v) > 0 && v[0] == '"' {
					if len(v) < 2 {
						v = ""
					} else {
						v = v[1 : len(v)-1]
					}
				}
				return v, true
			}
			k := strings.IndexByte(line[i:], ';')
			if k < 0 {
				break
			}
			i += k + 1
		}
	}
	return "", false
}

// findCookiePkg returns the value of the first cookie called name as the
// "cookie" npm package 1.x/2.x parses a header (what @fastify/cookie 11
// uses): pairs split at ";", name and value trimmed of spaces and tabs, the
// first pair of a name wins, pairs without "=" are skipped, and no quotes are
// removed. The value is returned still percent-encoded; see decodeCookiePkg.
func findCookiePkg(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(part, "=")
			if !ok || strings.Trim(k, " \t") != name {
				continue
			}
			return strings.Trim(v, " \t"), true
		}
	}
	return "", false
}

// decodeCookiePkg percent-decodes v as the cookie package's default decode
// does: only when v holds a "%", and when decodeURIComponent would throw
// (a bad escape or bytes that are not UTF-8) v is kept as it is. The decoded
// bytes are appended to dst.
func decodeCookiePkg(dst []byte, v string) ([]byte, bool) {
	if strings.IndexByte(v, '%') < 0 {
		return dst, false
	}
	start := len(dst)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '%' {
			dst = append(dst, c)
			continue
		}
		if i+2 >= len(v) {
			return dst[:start], false
		}
		hi, ok1 := unhex(v[i+1])
		lo, ok2 := unhex(v[i+2])
		if !ok1 || !ok2 {
			return dst[:start], false
		}
		dst = append(dst, hi<<4|lo)
		i += 2
	}
	// decodeURIComponent throws on bytes that are not UTF-8 (surrogates
	// included), as utf8.Valid refuses them.
	if !utf8.Valid(dst[start:]) {
		return dst[:start], false
	}
	return dst, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// base64 alphabets. The decoders below are strict where Go's encoding/base64
// is not: no CR/LF skipping, no non-zero trailing bits, so every accepted
// encoding is the only one for its bytes.
const (
	stdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	urlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

type b64table [256]byte

func newTable(alphabet string) *b64table {
	var t b64table
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return &t
}

var (
	stdTable = newTable(stdAlphabet)
	urlTable = newTable(urlAlphabet)
)

// decodeB64 appends the decoding of s (unpadded) to dst, refusing any byte
// outside the alphabet, a length of 1 mod 4, and non-zero trailing bits.
func decodeB64(dst []byte, s string, t *b64table) ([]byte, bool) {
	if len(s)%4 == 1 {
		return dst, false
	}
	for len(s) >= 4 {
		a, b, c, d := t[s[0]], t[s[1]], t[s[2]], t[s[3]]
		if a|b|c|d == 0xff {
			return dst, false
		}
		n := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst = append(dst, byte(n>>16), byte(n>>8), byte(n))
		s = s[4:]
	}
	switch len(s) {
	case 2:
		a, b := t[s[0]], t[s[1]]
		if a|b == 0xff || b&0x0f != 0 {
			return dst, false
		}
		dst = append(dst, a<<2|b>>4)
	case 3:
		a, b, c := t[s[0]], t[s[1]], t[s[2]]
		if a|b|c == 0xff || c&0x03 != 0 {
			return dst, false
		}
		n := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6
		dst = append(dst, byte(n>>16), byte(n>>8))
	}
	return dst, true
}

// validB64 says whether every byte of s is in t's alphabet.
func validB64(s string, t *b64table) bool {
	for i := 0; i < len(s); i++ {
		if t[s[i]] == 0xff {
			return false
		}
	}
	return true
}

// encodeB64 writes the unpadded encoding of src into dst, which must be
// long enough, and returns the part written.
func encodeB64(dst, src []byte, alphabet string) []byte {
	n := 0
	for len(src) >= 3 {
		v := uint32(src[0])<<16 | uint32(src[1])<<8 | uint32(src[2])
		dst[n], dst[n+1], dst[n+2], dst[n+3] = alphabet[v>>18&63], alphabet[v>>12&63], alphabet[v>>6&63], alphabet[v&63]
		n += 4
		src = src[3:]
	}
	switch len(src) {
	case 1:
		v := uint32(src[0]) << 16
		dst[n], dst[n+1] = alphabet[v>>18&63], alphabet[v>>12&63]
		n += 2
	case 2:
		v := uint32(src[0])<<16 | uint32(src[1])<<8
		dst[n], dst[n+1], dst[n+2] = alphabet[v>>18&63], alphabet[v>>12&63], alphabet[v>>6&63]
		n += 3
	}
	return dst[:n]
}

// encodedLen is the unpadded base64 length of n bytes.
func encodedLen(n int) int { return (n*8 + 5) / 6 }

// jsonObject says whether b is one JSON object, as JSON.parse would accept
// it (surrounding whitespace allowed). Node sessions are objects; any
// other JSON value is refused even where a library would carry on with it.
func jsonObject(b []byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i < len(b) && b[i] == '{' && json.Valid(b)
}
