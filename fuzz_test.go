package refreshtoken

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// Secrets the fuzz targets send, to check that no error shows them.
const (
	fuzzRefreshToken = "rt-FUZZ-SECRET-refresh"
	fuzzClientSecret = "FUZZ-SECRET-client"
	fuzzAccessToken  = "at-FUZZ-SECRET/cached+access"
)

func checkNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Fatalf("error holds a secret: %q", msg)
		}
	}
}

// FuzzParse feeds the response parser arbitrary bodies, content types and
// statuses: it must not panic, must not return a token without an access
// token, and must not put a secret in an error.
func FuzzParse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt2","scope":"openid","id_token":"x.y.z"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"at","expires_in":"3600"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjE4MDAwMDAwMDB9.sig"}`))
	f.Add(200, "application/json", []byte(`{"error":"invalid_grant","error_description":"`+fuzzRefreshToken+`"}`))
	f.Add(400, "application/json", []byte(`{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`))
	f.Add(429, "application/json", []byte(`{"error":"too_many_requests"}`))
	f.Add(500, "text/html", []byte(`<html>`+fuzzClientSecret+`</html>`))
	f.Add(200, "application/x-www-form-urlencoded", []byte(`access_token=at&token_type=bearer&expires_in=3600`))
	f.Add(200, "text/plain; charset=utf-8", []byte(`access_token=at&expires_in=1e999`))
	f.Add(200, "application/json", []byte(`{"access_token":"at","expires_in":1e400}`))
	f.Add(200, "application/json", []byte(`{"access_token":"at","expires_in":-1}`))
	f.Add(200, "application/json", []byte(`{"access_token":null}`))
	f.Add(200, "", []byte(`{"access_token":"at"`))
	f.Add(400, "application/json", []byte(`{"error":"x","error_description":"at-FUZZ-SECRET\/cached%2baccess","error_uri":"https://x/?t=rt-FUZZ-SECRET-refresh"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"at","expires_in":"rt-FUZZ-SECRET-refresh"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"at","expires_in":0.5}`))
	f.Add(200, "application/json", []byte(`{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjEuOGUxMn0.sig"}`))
	f.Add(200, "FUZZ-SECRET-client/x", []byte(`<html>`))
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		g := &grant{clientSecret: fuzzClientSecret}
		resp := &http.Response{StatusCode: status, Status: fmt.Sprint(status, " ", fuzzRefreshToken), Header: http.Header{"Content-Type": {contentType}}}
		sent := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		tok, _, err := g.parse(resp, body, sent, fuzzRefreshToken, time.Time{}, fuzzAccessToken)
		if err != nil {
			for _, s := range shown(err) {
				for _, secret := range []string{fuzzRefreshToken, fuzzClientSecret, fuzzAccessToken} {
					if strings.Contains(s, secret) {
						t.Fatalf("%q shows a secret", s)
					}
				}
			}
			if tok != nil {
				t.Fatalf("parse returned both a token and an error: %v", err)
			}
			_ = permanent(err)
			_ = serverWait(err, sent)
			return
		}
		if tok.AccessToken == "" {
			t.Fatal("parse returned a token with no access token")
		}
		if !tok.Expiry.IsZero() && tok.ExpiresIn > 0 && tok.Expiry.Before(sent) {
			t.Fatalf("Expiry %v before the request was sent", tok.Expiry)
		}
	})
}

// FuzzGrant runs the whole grant, over HTTP, against a server that answers
// with an arbitrary status, headers and body: no panic, no secret in an
// error, and an error or a usable token.
func FuzzGrant(f *testing.F) {
	f.Add(200, "Content-Type: application/json", []byte(`{"access_token":"at","expires_in":3600}`))
	f.Add(429, "Content-Type: application/json\nRetry-After: 7\nX-RateLimit-Reset: 1800000000", []byte(`{"error":"too_many_requests"}`))
	f.Add(503, "Retry-After: Wed, 25 Nov 2026 12:00:00 GMT", []byte(`unavailable`))
	f.Add(307, "Location: /elsewhere", []byte(``))
	f.Add(403, "Content-Type: application/json", []byte(`{"error":"invalid_grant","error_description":"`+fuzzRefreshToken+` `+fuzzClientSecret+`"}`))
	f.Add(200, "Content-Type: application/x-www-form-urlencoded", []byte(`access_token=at&refresh_token=rt2`))
	f.Add(200, "Content-Type: application/json", []byte(`{"access_token":"at","refresh_token":"`+strings.Repeat("r", 600)+`"}`))
	// One server for the whole run, answering with the input under test: a
	// server per input would spend the run on listeners. Inputs run one at
	// a time within a fuzzing process.
	var mu sync.Mutex
	var answer struct {
		status  int
		headers string
		body    []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for _, line := range strings.Split(answer.headers, "\n") {
			k, v, ok := strings.Cut(line, ":")
			k = strings.TrimSpace(k)
			if ok && k != "" && k != "Content-Length" && k != "Transfer-Encoding" && !strings.ContainsAny(k, " \r\t") && !strings.ContainsAny(v, "\r\x00") {
				w.Header().Add(k, strings.TrimSpace(v))
			}
		}
		w.WriteHeader(answer.status)
		w.Write(answer.body)
	}))
	defer srv.Close()
	f.Fuzz(func(t *testing.T, status int, headers string, body []byte) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400
		}
		mu.Lock()
		answer.status, answer.headers, answer.body = status, headers, body
		mu.Unlock()
		now := func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }
		conf := &oauth2.Config{ClientID: "c", ClientSecret: fuzzClientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
		ts := New(context.Background(), conf, &oauth2.Token{RefreshToken: fuzzRefreshToken}, WithClock(now), WithRefreshTimeout(5*time.Second))
		defer ts.Close()
		tok, err := ts.Token()
		checkNoSecret(t, err, fuzzRefreshToken, fuzzClientSecret)
		if err == nil && (tok.AccessToken == "" || (!tok.Expiry.IsZero() && tok.Expiry.Before(now()))) {
			t.Fatalf("Token() = %+v: not a usable token", tok)
		}
	})
}

// FuzzRedact hides a secret in text, each of its characters in an encoding
// chosen by the input (as is, percent-encoded in either case or twice,
// JSON-escaped, + for a space, HTML references): redact must leave no
// trace of it, neither the secret nor its encoded form, between the
// [redacted] markers.
func FuzzRedact(f *testing.F) {
	f.Add("ab/cd+ef gh", "x ", " y", []byte{0})
	f.Add("ab/cd+ef gh", `{"d":"`, `"}`, []byte{4})                  // \/
	f.Add("ab/cd+ef gh", "?t=", "&u=1", []byte{0, 0, 0, 0, 0, 1, 0}) // only + escaped
	f.Add("ab/cd+ef gh", "?t=", "", []byte{2})                       // lowercase hex
	f.Add("ab/cd+ef gh", "", "", []byte{0, 0, 2, 0, 0, 1, 0, 0, 5})  // + for space
	f.Add("ab/cd+ef gh", "", "", []byte{3})                          // \u00XX
	f.Add("ab/cd+ef gh", "next=", "", []byte{8})                     // %25XX
	f.Add("ab/cd+ef gh", "", "", []byte{9})                          // \u0025XX
	f.Add("ab/cd+ef gh", "<p>", "</p>", []byte{6, 7, 10})            // HTML
	f.Add("tök€n😀", "", "", []byte{3, 1, 0, 6})                      // non-ASCII
	f.Add(`a"b\c<d>&e'f`, "", "", []byte{4, 10, 3})                  // quote, backslash, HTML-unsafe
	f.Add("%41%", "%", "41", []byte{0, 1, 2})                        // a secret made of escapes
	f.Add("\xff\xfe", "", "", []byte{1, 8})                          // not UTF-8
	f.Fuzz(func(t *testing.T, secret, prefix, suffix string, choices []byte) {
		if secret == "" || len(secret) > 200 || len(prefix)+len(suffix) > 2000 || strings.Contains(secret, "[redacted]") {
			return
		}
		enc := encode(secret, choices)
		text := prefix + enc + suffix
		out := redact(text, secret)
		for _, piece := range strings.Split(out, "[redacted]") {
			if strings.Contains(piece, secret) || strings.Contains(piece, enc) {
				t.Fatalf("redact(%q) = %q: shows the secret %q or its form %q", text, out, secret, enc)
			}
		}
		shown := redactShown(text, secret)
		for _, q := range []string{strconv.Quote(shown), strconv.QuoteToASCII(shown)} {
			for _, piece := range strings.Split(q[1:len(q)-1], "[redacted]") {
				if strings.Contains(piece, secret) {
					t.Fatalf("redactShown(%q) = %q, shown as %s: shows the secret %q", text, shown, q, secret)
				}
			}
		}
	})
}

// encode writes s with each character in the encoding chosen by the next
// of choices, in turn.
func encode(s string, choices []byte) string {
	if len(choices) == 0 {
		choices = []byte{0}
	}
	var b strings.Builder
	for k := 0; len(s) > 0; k++ {
		r, size := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && size <= 1 {
			r, size = -1, 1 // not UTF-8: a byte
		}
		b.WriteString(encodeOne(s[:size], r, choices[k%len(choices)]%11))
		s = s[size:]
	}
	return b.String()
}

// encodeOne writes the character ch (the rune r, or -1 for a byte that is
// not UTF-8) in the encoding numbered how.
func encodeOne(ch string, r rune, how byte) string {
	pct := func(upper bool, prefix string) string {
		var b strings.Builder
		for i := 0; i < len(ch); i++ {
			h := fmt.Sprintf("%02x", ch[i])
			if upper {
				h = strings.ToUpper(h)
			}
			b.WriteString(prefix + h)
		}
		return b.String()
	}
	switch how {
	case 1:
		return pct(true, "%")
	case 2:
		return pct(false, "%")
	case 3:
		if r < 0 {
			break
		}
		if r > 0xFFFF {
			r1, r2 := utf16.EncodeRune(r)
			return fmt.Sprintf(`\u%04x\u%04X`, r1, r2)
		}
		return fmt.Sprintf(`\u%04x`, r)
	case 4:
		if e, ok := map[string]string{"/": `\/`, `"`: `\"`, `\`: `\\`, "\n": `\n`, "\t": `\t`, "\r": `\r`, "\b": `\b`, "\f": `\f`}[ch]; ok {
			return e
		}
	case 5:
		if ch == " " {
			return "+"
		}
		return pct(true, "%")
	case 6:
		if r >= 0 {
			return fmt.Sprintf("&#%d;", r)
		}
	case 7:
		if r >= 0 {
			return fmt.Sprintf("&#x%X;", r)
		}
	case 8:
		return pct(true, "%25")
	case 9:
		return pct(false, `\u0025`)
	case 10:
		if e, ok := map[string]string{"&": "&amp;", "<": "&lt;", ">": "&gt;", `"`: "&quot;", "'": "&apos;"}[ch]; ok {
			return e
		}
	}
	return ch
}
