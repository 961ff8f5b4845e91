package refreshtoken

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
			tok, rotated, err := g.parse(resp, []byte(body), sent, fuzzRefreshToken)
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
