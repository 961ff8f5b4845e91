package refreshtoken

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Secrets the fuzz targets send, to check that no error shows them.
const (
	fuzzRefreshToken = "rt-FUZZ-SECRET-refresh"
	fuzzClientSecret = "FUZZ-SECRET-client"
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
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		g := &grant{clientSecret: fuzzClientSecret}
		resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{"Content-Type": {contentType}}}
		sent := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		tok, _, err := g.parse(resp, body, sent, fuzzRefreshToken)
		if err != nil {
			checkNoSecret(t, err, fuzzRefreshToken, fuzzClientSecret)
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
