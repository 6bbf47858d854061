package authz

import "testing"

// FuzzUnsign checks that no cookie value crashes the parser and that
// whatever it accepts really is a valid id signed with the secret.
func FuzzUnsign(f *testing.F) {
	for _, v := range loadVectors(f).Vectors {
		f.Add(v.CookieValue)
		f.Add(v.Raw)
	}
	f.Add("s%3A")
	f.Add("s:.")
	f.Add("%")
	f.Add("s%3AAAECAwQFBgcICQoLDA0ODxAREhMUFRYX.%zz")
	c := newCookieCodec("connect.sid", []string{"keyboard cat", "s3cr3t"}, 4096)
	f.Fuzz(func(t *testing.T, value string) {
		s := c.get()
		defer c.put(s)
		sid, reason := c.unsign(s, value)
		if reason != "" {
			return
		}
		if !validSID(sid) {
			t.Fatalf("accepted invalid sid %q", sid)
		}
		id := string(sid)
		if Sign(id, "keyboard cat") != canonical(value) && Sign(id, "s3cr3t") != canonical(value) {
			t.Fatalf("accepted %q, which no secret signs", value)
		}
		// The header scanner must find what it is given.
		got, ok := findCookie([]string{"a=b; connect.sid=" + value}, "connect.sid")
		if !ok || got != value {
			t.Fatalf("findCookie lost the value: %q", got)
		}
	})
}

// canonical re-encodes a cookie value the way Sign writes it.
func canonical(value string) string {
	b, ok := unescape(nil, value)
	if !ok {
		return ""
	}
	raw := string(b)
	out := make([]byte, 0, len(raw)+8)
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case ':':
			out = append(out, "%3A"...)
		case '+':
			out = append(out, "%2B"...)
		case '/':
			out = append(out, "%2F"...)
		default:
			out = append(out, raw[i])
		}
	}
	return string(out)
}

// FuzzDecode checks that no stored value crashes the decoder and that an
// identity it returns can never smuggle a header.
func FuzzDecode(f *testing.F) {
	for _, s := range loadVectors(f).StoredSessions {
		f.Add([]byte(s.Value))
	}
	f.Add([]byte(aliceJSON))
	f.Add([]byte(`{"passport":{"user":{"id":1e999,"email":["a","b"]}}}`))
	f.Add([]byte(`{"passport":{"user":"a\r\nb"}}`))
	f.Add([]byte(`[`))
	d := testDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := d.decode(data)
		if err != nil {
			return
		}
		if !validHeaderValue(s.User) {
			t.Fatalf("identity %q would corrupt a header", s.User)
		}
		for _, h := range s.Headers {
			if !validHeaderValue(h.Value[0]) || h.Value[0] == "" {
				t.Fatalf("header %s=%q would corrupt a header", h.Name, h.Value[0])
			}
		}
	})
}
