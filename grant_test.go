package refreshtoken

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// jwt returns an unsigned JWT whose payload is the JSON claims.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + ".sig"
}

// TestParseExpiry: where the expiry of an answer comes from, and that an
// answer whose token has already expired is an error that keeps the
// rotated refresh token.
func TestParseExpiry(t *testing.T) {
	sent := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	yearOn := sent.Add(maxLifetime)
	tests := []struct {
		name        string
		body        string // the JSON fields after access_token and refresh_token
		access      string // "" for an opaque access token
		want        time.Time
		wantIn      int64  // ExpiresIn
		wantErr     string // substring of the error; "" for success
		notInErr    string // must not be in the error
		reason      string
		contentType string
	}{
		{name: "expires_in", body: `"expires_in":3600`, want: sent.Add(time.Hour), wantIn: 3600},
		{name: "expires_in string", body: `"expires_in":"3600"`, want: sent.Add(time.Hour), wantIn: 3600},
		{name: "expires_in fraction", body: `"expires_in":0.5`, want: sent.Add(500 * time.Millisecond), wantIn: 1,
			reason: "a fraction of a second is honoured; ExpiresIn is at least 1"},
		{name: "expires_in with a fraction", body: `"expires_in":90.25`, want: sent.Add(90*time.Second + 250*time.Millisecond), wantIn: 90},
		{name: "expires_in string fraction", body: `"expires_in":" 0.5 "`, want: sent.Add(500 * time.Millisecond), wantIn: 1},
		{name: "expires_in negative", body: `"expires_in":-60`, wantErr: "already expired",
			reason: "x/oauth2 too reads a negative expires_in as already expired"},
		{name: "expires_in zero", body: `"expires_in":0`, wantErr: "already expired"},
		{name: "expires_in zero string", body: `"expires_in":"0"`, wantErr: "already expired"},
		{name: "expires_in negative string", body: `"expires_in":"-1"`, wantErr: "already expired"},
		{name: "expires_in negative form", contentType: "application/x-www-form-urlencoded", body: "expires_in=-5", wantErr: "already expired"},
		{name: "expires_in not positive beats a JWT exp", body: `"expires_in":0`, access: jwt(fmt.Sprintf(`{"exp":%d}`, sent.Add(time.Hour).Unix())), wantErr: "already expired"},
		{name: "expires_in past MaxInt32", body: `"expires_in":4294967296`, want: yearOn, wantIn: int64(maxLifetime / time.Second),
			reason: "bounded to maxLifetime, not 68 years"},
		{name: "expires_in huge", body: `"expires_in":1e300`, want: yearOn, wantIn: int64(maxLifetime / time.Second)},
		{name: "expires_in Inf string", body: `"expires_in":"Inf"`, wantErr: "not a number"},
		{name: "expires_in not a number, secret not quoted", body: `"expires_in":"` + fuzzRefreshToken + `"`, wantErr: "not a number", notInErr: fuzzRefreshToken},
		{name: "expires_in not a number, short", body: `"expires_in":"soon"`, wantErr: "not a number", notInErr: "soon",
			reason: "the server's string is never quoted, secret or not"},
		{name: "no expiry at all", want: time.Time{}, reason: "only a token with neither expires_in nor exp never expires"},
		{name: "JWT exp", access: jwt(fmt.Sprintf(`{"exp":%d}`, sent.Add(time.Hour).Unix())), want: sent.Add(time.Hour)},
		{name: "JWT exp with a fraction", access: jwt(fmt.Sprintf(`{"exp":%d.5}`, sent.Add(time.Hour).Unix())), want: sent.Add(time.Hour + 500*time.Millisecond)},
		{name: "JWT exp in milliseconds", access: jwt(`{"exp":1.8e12}`), want: yearOn,
			reason: "a server bug; clamped to maxLifetime, units are not guessed"},
		{name: "JWT exp huge", access: jwt(`{"exp":1e300}`), want: yearOn},
		{name: "JWT exp in the past", access: jwt(fmt.Sprintf(`{"exp":%d}`, sent.Add(-time.Minute).Unix())), wantErr: "already expired"},
		{name: "JWT exp when sent", access: jwt(fmt.Sprintf(`{"exp":%d}`, sent.Unix())), wantErr: "already expired"},
		{name: "JWT exp zero", access: jwt(`{"exp":0}`), wantErr: "already expired"},
		{name: "JWT exp negative", access: jwt(`{"exp":-1e300}`), wantErr: "already expired"},
		{name: "JWT exp null", access: jwt(`{"exp":null}`), want: time.Time{}},
		{name: "expires_in beats JWT exp", body: `"expires_in":60`, access: jwt(`{"exp":1.8e12}`), want: sent.Add(time.Minute), wantIn: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			access := tt.access
			if access == "" {
				access = "opaque-access"
			}
			ct := tt.contentType
			var body string
			if ct == "" {
				ct = "application/json"
				body = `{"access_token":"` + access + `","refresh_token":"rt2"`
				if tt.body != "" {
					body += "," + tt.body
				}
				body += "}"
			} else {
				body = "access_token=" + access + "&refresh_token=rt2&" + tt.body
			}
			g := &grant{clientSecret: fuzzClientSecret}
			resp := &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{"Content-Type": {ct}}}
			tok, rotated, err := g.parse(resp, []byte(body), sent, fuzzRefreshToken, time.Time{})
			if rotated != "rt2" {
				t.Errorf("parse() rotated = %q, want %q: the server has retired the old one", rotated, "rt2")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || tok != nil {
					t.Fatalf("parse() = %+v, %v; want no token and an error containing %q (%s)", tok, err, tt.wantErr, tt.reason)
				}
				if !strings.HasPrefix(err.Error(), "refreshtoken: ") {
					t.Errorf("error %q does not start with the package name", err)
				}
				if tt.notInErr != "" && strings.Contains(err.Error(), tt.notInErr) {
					t.Errorf("error %q quotes the server's value %q", err, tt.notInErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse() error = %v (%s)", err, tt.reason)
			}
			if !tok.Expiry.Equal(tt.want) || tok.ExpiresIn != tt.wantIn {
				t.Errorf("parse() Expiry, ExpiresIn = %v, %d; want %v, %d (%s)", tok.Expiry, tok.ExpiresIn, tt.want, tt.wantIn, tt.reason)
			}
		})
	}
}

// TestExpiredAnswerKeepsRotation: an answer whose token has already expired
// is a transient failure, and the refresh token it rotated is the one sent
// next.
func TestExpiredAnswerKeepsRotation(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var sentRTs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		sentRTs = append(sentRTs, r.PostForm.Get("refresh_token"))
		n := len(sentRTs)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"at%d","refresh_token":"rt%d","expires_in":%d}`, n, n+1, []int{0, 3600}[min(n-1, 1)])
	}))
	defer srv.Close()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	conf := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
	ts := New(context.Background(), conf, &oauth2.Token{RefreshToken: "rt1"}, WithClock(func() time.Time { return *clock.Load() }))
	defer ts.Close()
	_, err := ts.Token()
	var re *RetryError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "already expired") {
		t.Fatalf("Token() error = %v, want a RetryError saying the token has already expired", err)
	}
	later := re.RetryAt
	clock.Store(&later)
	if tok, err := ts.Token(); err != nil || tok.AccessToken != "at2" {
		t.Fatalf("Token() after the back-off = %v, %v; want at2", tok, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"rt1", "rt2"}; fmt.Sprint(sentRTs) != fmt.Sprint(want) {
		t.Errorf("refresh tokens sent = %q, want %q", sentRTs, want)
	}
}

// TestRedact: a secret is redacted in every encoding a server may echo it
// in, mixed within one span; text that decodes to no secret is kept.
func TestRedact(t *testing.T) {
	const secret = "ab/cd+ef gh"
	tests := []struct {
		name    string
		secrets []string // nil for secret
		form    string   // what stands between "x " and " y" in the text
		want    string   // the redacted text; "" for "x [redacted] y"
	}{
		{name: "as is", form: secret},
		{name: "JSON, / escaped", form: `ab\/cd+ef gh`},
		{name: "query escaped", form: `ab%2Fcd%2Bef+gh`},
		{name: "path escaped", form: `ab%2Fcd+ef%20gh`},
		{name: "only + escaped", form: `ab/cd%2Bef gh`},
		{name: "lowercase hex", form: `ab%2fcd%2bef%20gh`},
		{name: "+ for space, / as is", form: `ab/cd%2bef+gh`},
		{name: "JSON and percent mixed", form: `ab\/cd%2bef+gh`},
		{name: "every byte percent-encoded", form: `%61%62%2F%63%64%2B%65%66%20%67%68`},
		{name: "every byte \\u-escaped", form: `\u0061\u0062\u002f\u0063\u0064\u002B\u0065\u0066\u0020\u0067\u0068`},
		{name: "double percent", form: `ab%252Fcd%252Bef%2520gh`},
		{name: "JSON \\u0025 for the percent", form: `ab\u00252Fcd\u00252Bef\u002520gh`},
		{name: "escaped hex digits", form: `ab%%32%46cd%2%42ef gh`},
		{name: "JSON-escaped backslash of a \\u", form: `\\u0061b/cd+ef gh`},
		{name: "HTML references", form: `ab&#47;cd&#43;ef&#x20;gh`},
		{name: "HTML references without semicolons", form: `ab&#47cd&#x2b;ef gh`},
		{name: "HTML in a URL", form: `ab%2Fcd&#43;ef+gh`},
		{name: "non-ASCII, \\u", secrets: []string{"tök€n"}, form: `t\u00f6k\u20ACn`},
		{name: "non-ASCII, percent", secrets: []string{"tök€n"}, form: `t%C3%B6k%e2%82%acn`},
		{name: "surrogate pair", secrets: []string{"k😀y"}, form: `k\ud83d\uDE00y`},
		{name: "quote and backslash, JSON", secrets: []string{`a"b\c`}, form: `a\"b\\c`},
		{name: "Go JSON, HTML-safe", secrets: []string{`a<b>&c`}, form: `a\u003cb\u003e\u0026c`},
		{name: "HTML named", secrets: []string{`a<b>&c"d'e`}, form: `a&lt;b&gt;&amp;c&quot;d&apos;e`},
		{name: "two secrets overlapping: one span", secrets: []string{"ab/c", "cdXX"}, form: `ab/cdXX`},
		{name: "similar, kept", form: `ab/cd+ef gi`, want: `x ab/cd+ef gi y`},
		{name: "one byte short, kept", form: `ab%2Fcd%2Bef+g`, want: `x ab%2Fcd%2Bef+g y`},
		{name: "escapes of other bytes kept", secrets: []string{"B"}, form: `%41\u0041&#65;`, want: `x %41\u0041&#65; y`},
		{name: "no secrets", secrets: []string{""}, form: secret, want: "x " + secret + " y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = []string{secret}
			}
			want := tt.want
			if want == "" {
				want = "x [redacted] y"
			}
			if got := redact("x "+tt.form+" y", secrets...); got != want {
				t.Errorf("redact(%q) = %q, want %q", "x "+tt.form+" y", got, want)
			}
		})
	}
}

// Secrets with the characters that encodings change.
const (
	specialRefreshToken = "rt/SECRET+1 2"
	specialClientSecret = "cs/SECRET+3"
)

// shown lists the renderings of err a log may hold: the error in every
// verb, and the fields of a RetrieveError it wraps, as is and quoted.
func shown(err error) []string {
	var out []string
	for _, verb := range []string{"%v", "%+v", "%s", "%q", "%+q", "%#v"} {
		out = append(out, fmt.Sprintf(verb, err))
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		fields := []string{re.Error(), string(re.Body), re.ErrorCode, re.ErrorDescription, re.ErrorURI, re.Response.Status}
		for _, verb := range []string{"%d", "%t"} {
			fields = append(fields, fmt.Sprintf(verb, re)) // the fields, and those of the Response
		}
		for _, f := range fields {
			out = append(out, f, strconv.Quote(f), strconv.QuoteToASCII(f))
		}
	}
	return out
}

// TestParseRedacts: no secret, in any encoding the server echoes it in,
// shows in the error of an answer, nor in the RetrieveError it wraps.
func TestParseRedacts(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte("c:" + url.QueryEscape(specialClientSecret)))
	tests := []struct {
		name        string
		status      int
		reason      string // the status line's reason phrase; "" for Go's
		contentType string
		header      http.Header // more than the Content-Type
		body        string
		basicAuth   bool
		also        []string // passed as redactAlso
		notShown    []string // more than the secrets
	}{
		{name: "reason phrase is the refresh token", status: 503, reason: specialRefreshToken, contentType: "text/plain"},
		{name: "reason phrase not shown", status: 503, reason: "Custom-Phrase", contentType: "text/plain", notShown: []string{"Custom-Phrase"}},
		{name: "reason phrase of a 200 with an error", status: 200, reason: specialRefreshToken, contentType: "application/json", body: `{"error":"invalid_grant"}`},
		{name: "expires_in not a number", status: 200, contentType: "application/json",
			body: `{"access_token":"a","expires_in":"` + specialRefreshToken + `"}`},
		{name: "JSON-escaped / in the body", status: 400, contentType: "application/json",
			body: `{"error":"invalid_grant","error_description":"rt\/SECRET+1 2"}`, notShown: []string{`rt\/SECRET+1 2`}},
		{name: "error_uri, + alone percent-encoded", status: 400, contentType: "application/json",
			body: `{"error":"invalid_request","error_uri":"https://x/?t=rt/SECRET%2B1+2"}`, notShown: []string{"rt/SECRET%2B1+2"}},
		{name: "lowercase hex in the description", status: 400, contentType: "application/json",
			body: `{"error":"invalid_request","error_description":"got rt%2fSECRET%2b1%202"}`, notShown: []string{"rt%2fSECRET%2b1%202"}},
		{name: "error code is the client secret, \\u-escaped", status: 401, contentType: "application/json",
			body: `{"error":"cs\u002fSECRET\u002b3"}`, notShown: []string{`cs\u002fSECRET\u002b3`}},
		{name: "HTML page echoing the form", status: 500, contentType: "text/html",
			body:     `<p>refresh_token: rt/SECRET&#43;1 2, client_secret: cs&#x2F;SECRET&#43;3</p>`,
			notShown: []string{"rt/SECRET&#43;1 2", "cs&#x2F;SECRET&#43;3"}},
		{name: "double-encoded in a redirect URL", status: 400, contentType: "application/json",
			body:     `{"error":"invalid_request","error_uri":"https://x/?next=https%3A%2F%2Fy%2F%3Frt%3Drt%252FSECRET%252B1%25202"}`,
			notShown: []string{"rt%252FSECRET%252B1%25202"}},
		{name: "Basic credential echoed", status: 401, contentType: "text/plain", basicAuth: true,
			body: "Authorization: Basic " + basic, notShown: []string{basic}},
		{name: "client secret in the Content-Type of a non-JSON body", status: 200, contentType: "x/" + url.QueryEscape(specialClientSecret),
			body: "<html>", notShown: []string{"cs%2fsecret%2b3", url.QueryEscape(specialClientSecret)}},
		{name: "refresh token and access token echoed in an error answer", status: 400, contentType: "application/json",
			body:     `{"error":"invalid_request","access_token":"at-SECRET-new","refresh_token":"rt-SECRET-new","error_description":"at-SECRET-new rt-SECRET-new"}`,
			notShown: []string{"at-SECRET-new", "rt-SECRET-new"}},
		{name: "header and trailer echo the refresh token", status: 400, contentType: "application/json", body: `{"error":"invalid_request"}`,
			header:   http.Header{"Location": {"/x?refresh_token=" + url.QueryEscape(specialRefreshToken)}, "X-" + specialRefreshToken: {"1"}},
			notShown: []string{url.QueryEscape(specialRefreshToken)}},
		{name: "cached access token echoed", status: 400, contentType: "application/json", also: []string{"at-SECRET/cached"},
			body: `{"error":"invalid_request","error_description":"at-SECRET%2Fcached is not a refresh token"}`, notShown: []string{"at-SECRET/cached", "at-SECRET%2Fcached"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &grant{clientID: "c", clientSecret: specialClientSecret, basicAuth: tt.basicAuth}
			status := fmt.Sprintf("%d %s", tt.status, http.StatusText(tt.status))
			if tt.reason != "" {
				status = fmt.Sprintf("%d %s", tt.status, tt.reason)
			}
			resp := &http.Response{StatusCode: tt.status, Status: status, Header: http.Header{"Content-Type": {tt.contentType}}, Trailer: tt.header}
			for k, vs := range tt.header {
				resp.Header[k] = vs
			}
			tok, _, err := g.parse(resp, []byte(tt.body), time.Unix(1_800_000_000, 0), specialRefreshToken, time.Time{}, tt.also...)
			if err == nil {
				t.Fatalf("parse() = %+v, want an error", tok)
			}
			for _, s := range shown(err) {
				for _, secret := range append([]string{specialRefreshToken, specialClientSecret}, tt.notShown...) {
					if strings.Contains(s, secret) {
						t.Errorf("%q shows %q", s, secret)
					}
				}
			}
		})
	}
}

// TestRedactShown: a string whose %q or %+q form would show a secret (one
// with a backslash or a quote) is redacted whole.
func TestRedactShown(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		s      string
		want   string
	}{
		{name: "secret as is", secret: "a-SECRET", s: "x a-SECRET y", want: "x [redacted] y"},
		{name: "newline shown as \\n", secret: `a\nb`, s: "x a\nb y", want: "[redacted]"},
		{name: "quote shown as \\\"", secret: `a\"b`, s: `x a"b y`, want: "[redacted]"},
		{name: "non-ASCII shown by %+q", secret: `t\u00f6k`, s: "x tök y", want: "[redacted]"},
		{name: "backslash in the secret, not shown", secret: `a\nb`, s: "x a b y", want: "x a b y"},
		{name: "cut after maxShown", secret: "a-SECRET", s: strings.Repeat("x", maxShown) + "a-SECRET", want: strings.Repeat("x", maxShown) + "..."},
		{name: "a secret across the cut is redacted whole", secret: "a-SECRET", s: strings.Repeat("x", maxShown-3) + "%61-SECRET" + "yyyy",
			want: strings.Repeat("x", maxShown-3) + "[redacted]..."},
		{name: "cut at a rune boundary", secret: "a-SECRET", s: strings.Repeat("x", maxShown-1) + "éz", want: strings.Repeat("x", maxShown-1) + "..."},
		{name: "not cut at maxShown", secret: "a-SECRET", s: strings.Repeat("x", maxShown), want: strings.Repeat("x", maxShown)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactShown(tt.s, tt.secret); got != tt.want {
				t.Errorf("redactShown(%.100q, %q) = %.100q, want %.100q", tt.s, tt.secret, got, tt.want)
			}
		})
	}
}

// BenchmarkRedactShown measures the redaction of an error body: a typical
// one, and those a hostile server can make slowest (every position the
// start of a near-miss of a secret), which maxShown bounds.
func BenchmarkRedactShown(b *testing.B) {
	secrets := []string{"rt-" + strings.Repeat("A", 40) + "B", "cs-client-secret", "at-access-token"}
	for _, bb := range []struct {
		name string
		text string
	}{
		{name: "typical", text: `{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}`},
		{name: "1MB text", text: strings.Repeat("The quick brown fox jumps over the lazy dog. ", 1<<20/45)},
		{name: "1MB near-misses", text: strings.Repeat("rt-"+strings.Repeat("%41", 40)+"%43", 1<<20/126)},
		{name: "1MB spaces", text: strings.Repeat("+", 1<<20)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				redactShown(bb.text, append(secrets, strings.Repeat(" ", 40)+"x")...)
			}
		})
	}
}

// TestParseCutsLongStrings: what an error keeps of a long error answer is
// cut to maxShown, so that redacting it stays quick, and keeps what
// matters: the header fields, short ones first.
func TestParseCutsLongStrings(t *testing.T) {
	long := strings.Repeat("<p>an error page</p>", 10_000)
	g := &grant{clientSecret: specialClientSecret}
	resp := &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{
		"Content-Type": {"text/html"}, "Retry-After": {"7"}, "X-Padding": {long}}}
	_, _, err := g.parse(resp, []byte(long), time.Unix(1_800_000_000, 0), specialRefreshToken, time.Time{})
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("parse() error = %v, want a RetrieveError", err)
	}
	if want := long[:maxShown] + "..."; string(re.Body) != want {
		t.Errorf("Body has %d bytes, want the first %d and ...", len(re.Body), maxShown)
	}
	if got := re.Response.Header.Get("Retry-After"); got != "7" {
		t.Errorf("Retry-After = %q, want 7", got)
	}
	if got := re.Response.Header.Get("X-Padding"); got != "" {
		t.Errorf("X-Padding has %d bytes, want it left out: past the budget", len(got))
	}
}
