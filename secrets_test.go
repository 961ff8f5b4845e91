package refreshtoken_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// verbs are the fmt verbs a value may be printed with: besides %v and %s,
// the others print a struct's fields, and %x its strings in hex.
var verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%+q", "%x", "%X", "% x", "%d", "%o", "%O", "%b", "%t", "%c", "%U", "%e", "%f", "%g", "%10.3v", "%-8s"}

// leaks returns the secrets that appear, as they are or in hex, in any
// rendering of v.
func leaks(v any, secrets []string) []string {
	var found []string
	for _, format := range verbs {
		s := fmt.Sprintf(format, v)
		for _, secret := range secrets {
			if secret == "" {
				continue
			}
			for _, form := range []string{secret, hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret)))} {
				if strings.Contains(s, form) {
					found = append(found, fmt.Sprintf("%s in %s: %.300s", form, format, s))
				}
			}
		}
	}
	return found
}

// TestNoSecretInErrors drives every error path with recognisable secrets
// and checks that no error, however printed, and nothing logged holds the
// refresh token, the client secret or an access token.
func TestNoSecretInErrors(t *testing.T) {
	const clientSecret = "SECRET-client-secret-42"
	var logged bytes.Buffer
	orig := log.Writer()
	log.SetOutput(&logged)
	defer log.SetOutput(orig)

	faults := map[string]refreshtokentest.Fault{
		"drop":              {Drop: true},
		"drop after rotate": {DropAfterRotate: true},
		"truncated":         {Truncate: true},
		"non-JSON":          {NonJSON: true},
		"huge":              {Huge: true},
		"429":               {Status: 429, Header: http.Header{"Retry-After": {"3"}}},
		"500":               {Status: 500},
		"502":               {Status: 502},
		"503":               {Status: 503},
		"invalid_grant":     {Status: 403, Error: "invalid_grant"},
		"invalid_client":    {Status: 401, Error: "invalid_client"},
		"slow":              {Latency: 5 * time.Second},
	}
	for name, fault := range faults {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, ClientSecret: clientSecret})
			defer srv.Close()
			rt := srv.NewRefreshToken("openid")
			ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
				refreshtoken.WithClock(clock.Now), refreshtoken.WithRefreshTimeout(50*time.Millisecond),
				refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil)))
			defer ts.Close()
			tok := mustToken(t, ts)
			secrets := []string{rt, tok.RefreshToken, tok.AccessToken, clientSecret}

			srv.Inject(1, fault)
			ts.Invalidate()
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded under a fault")
			}
			for _, l := range append(leaks(err, secrets), leaks(ts.Err(), secrets)...) {
				t.Error(l)
			}
			var re *oauth2.RetrieveError
			if errors.As(err, &re) {
				for _, l := range append(leaks(re, secrets), leaks(string(re.Body), secrets)...) {
					t.Error(l)
				}
			}
			// Through the Transport, too.
			_, err = refreshtoken.NewClient(context.Background(), ts).Get(srv.APIURL)
			for _, l := range leaks(err, secrets) {
				t.Error(l)
			}
		})
	}

	// Answers that echo the secrets back, and a redirect.
	for _, status := range []int{200, 400, 500, 307} {
		t.Run(fmt.Sprintf("echo %d", status), func(t *testing.T) {
			const rt, at = "rt-SECRET-refresh", "at-SECRET-access"
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Location", "/elsewhere?refresh_token="+rt)
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"error":"invalid_request","error_description":"bad %s %s %s","error_uri":"https://x/%s","access_token":%q,"refresh_token":%q}`, rt, clientSecret, at, rt, at, rt)
			}))
			defer srv.Close()
			conf := &oauth2.Config{ClientID: "c", ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
			secrets := []string{rt, at, clientSecret}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt},
				refreshtoken.WithObserver(scanSecrets(t, func() []string { return secrets }, nil)))
			defer ts.Close()
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded")
			}
			for _, l := range leaks(err, secrets) {
				t.Error(l)
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("no RetrieveError in %v", err)
			}
			for _, l := range append(leaks(re, secrets), leaks(string(re.Body), secrets)...) {
				t.Error(l)
			}
		})
	}

	t.Run("network error, Basic auth", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		const rt = "rt-SECRET-refresh"
		conf := &oauth2.Config{ClientID: "c", ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInHeader}}
		ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt})
		defer ts.Close()
		_, err := ts.Token()
		for _, l := range leaks(err, []string{rt, clientSecret}) {
			t.Error(l)
		}
	})

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tt := range []struct{ name, tokenURL string }{
		{"network error, careless URL", closed.URL + "?client_secret=" + clientSecret},
		{"unparsable URL holding the client secret", "https://x/%zz?client_secret=" + clientSecret},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const rt = "rt-SECRET-refresh"
			conf := &oauth2.Config{ClientID: "c", ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: tt.tokenURL}}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt})
			defer ts.Close()
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded")
			}
			for _, l := range leaks(err, []string{rt, clientSecret}) {
				t.Error(l)
			}
		})
	}

	t.Run("reason phrase echoes the refresh token", func(t *testing.T) {
		const rt = "rt-SECRET-refresh"
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 503 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", rt)
			buf.Flush()
		}))
		defer srv.Close()
		conf := &oauth2.Config{ClientID: "c", ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
		ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt})
		defer ts.Close()
		_, err := ts.Token()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) {
			t.Fatalf("Token() error = %v, want a RetrieveError", err)
		}
		for _, l := range append(append(leaks(err, []string{rt}), leaks(re, []string{rt})...), leaks(re.Response.Status, []string{rt})...) {
			t.Error(l)
		}
	})

	// An endpoint that echoes the access token the source holds, cached
	// (stale, refreshed in the background) or just invalidated.
	for _, invalidate := range []bool{false, true} {
		t.Run(fmt.Sprintf("echo of the cached access token, invalidated %v", invalidate), func(t *testing.T) {
			const rt, at = "rt-SECRET-refresh", "at-SECRET/cached+access"
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"error":"invalid_request","error_description":"still valid: at-SECRET%%2Fcached%%2Baccess","error_uri":"https://x/?t=at-SECRET\\/cached%%2baccess"}`)
			}))
			defer srv.Close()
			clock := newFakeClock(t0)
			conf := &oauth2.Config{ClientID: "c", ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{AccessToken: at, RefreshToken: rt, Expiry: t0.Add(time.Minute)}, refreshtoken.WithClock(clock.Now))
			defer ts.Close()
			var err error
			if invalidate {
				ts.Invalidate()
				_, err = ts.Token()
			} else {
				if tok, err := ts.Token(); err != nil || tok.AccessToken != at {
					t.Fatalf("Token() = %v, %v; want the cached token", tok, err)
				}
				eventually(t, "the background refresh to fail", func() bool { return ts.Err() != nil })
				err = ts.Err()
			}
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) {
				t.Fatalf("error = %v, want a RetrieveError", err)
			}
			secrets := []string{rt, at, clientSecret, "at-SECRET%2Fcached%2Baccess", `at-SECRET\\/cached%2baccess`}
			for _, l := range append(append(leaks(err, secrets), leaks(re, secrets)...), leaks(string(re.Body), secrets)...) {
				t.Error(l)
			}
		})
	}

	t.Run("callback error", func(t *testing.T) {
		srv := refreshtokentest.NewServer(refreshtokentest.Config{ClientSecret: clientSecret})
		defer srv.Close()
		rt := srv.NewRefreshToken("")
		ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
			refreshtoken.WithOnNewToken(func(context.Context, *oauth2.Token) error { return errors.New("disk full") }))
		defer ts.Close()
		_, err := ts.Token()
		tok := mustToken(t, ts)
		for _, l := range leaks(err, []string{rt, tok.RefreshToken, tok.AccessToken, clientSecret}) {
			t.Error(l)
		}
	})

	if logged.Len() > 0 {
		t.Errorf("the package logged: %s", logged.String())
	}
}

// TestTokenSourcePrintsNoSecret: a TokenSource printed or logged shows no
// secret (refresh token, client secret, cached access token), with any fmt
// verb, within a struct, and through slog.
func TestTokenSourcePrintsNoSecret(t *testing.T) {
	const clientSecret = "SECRET-client-secret-42"
	srv := refreshtokentest.NewServer(refreshtokentest.Config{ClientSecret: clientSecret})
	defer srv.Close()
	rt := srv.NewRefreshToken("")
	conf := srv.Config()
	conf.Endpoint.TokenURL += "?client_secret=" + clientSecret // a careless URL
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt})
	defer ts.Close()
	tok := mustToken(t, ts)
	secrets := []string{rt, tok.RefreshToken, tok.AccessToken, clientSecret}
	if tok.AccessToken == "" || clientSecret == "" || rt == "" {
		t.Fatal("the source should hold all three secrets")
	}
	for _, l := range leaks(ts, secrets) {
		t.Error(l)
	}
	for _, l := range leaks(struct{ TS *refreshtoken.TokenSource }{ts}, secrets) {
		t.Error("in a struct:", l)
	}
	for _, verb := range verbs {
		if got, want := fmt.Sprintf(verb, ts), ts.String(); !strings.Contains(got, want) {
			t.Errorf("Sprintf(%q, ts) = %q, want the String() form %q", verb, got, want)
		}
	}
	var out bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("source", "ts", ts)
	}
	for _, secret := range secrets {
		if strings.Contains(out.String(), secret) {
			t.Errorf("slog output holds a secret: %s", out.String())
		}
	}
	if want := srv.TokenURL; !strings.Contains(fmt.Sprint(ts), want) {
		t.Errorf("String() = %q, want it to name the token URL %s", fmt.Sprint(ts), want)
	}
}
