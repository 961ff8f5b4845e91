package refreshtoken_test

import (
	"bytes"
	"context"
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

// leaks returns the secrets that appear in any rendering of v.
func leaks(v any, secrets []string) []string {
	var found []string
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		s := fmt.Sprintf(format, v)
		for _, secret := range secrets {
			if secret != "" && strings.Contains(s, secret) {
				found = append(found, fmt.Sprintf("%s in %s: %s", secret, format, s))
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
				refreshtoken.WithClock(clock.Now), refreshtoken.WithRefreshTimeout(50*time.Millisecond))
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
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt})
			defer ts.Close()
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded")
			}
			secrets := []string{rt, at, clientSecret}
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
// secret, in any format and through slog.
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
	for _, l := range leaks(ts, secrets) {
		t.Error(l)
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
