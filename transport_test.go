package refreshtoken_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// apiBody sends req through client and returns the status and the body the
// API received, as it echoes it.
func apiBody(t *testing.T, client *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var echo struct{ Body string }
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, echo.Body
}

func TestTransportRetriesReplayable(t *testing.T) {
	tests := []struct {
		name       string
		newRequest func(url string) *http.Request
		wantStatus int
		wantBody   string
	}{
		{name: "GET", newRequest: func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodGet, url, nil)
			return r
		}, wantStatus: 200},
		{name: "POST with GetBody", newRequest: func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("payload"))
			return r
		}, wantStatus: 200, wantBody: "payload"},
		{name: "POST with a one-shot body: not retried", newRequest: func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, io.NopCloser(strings.NewReader("payload")))
			return r
		}, wantStatus: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := setup(t, clock, refreshtokentest.Config{})
			client := refreshtoken.NewClient(context.Background(), ts)
			if status, _ := apiBody(t, client, tt.newRequest(srv.APIURL)); status != 200 {
				t.Fatalf("first call: %d", status)
			}
			srv.RevokeAccessTokens() // the API now rejects the cached token
			req := tt.newRequest(srv.APIURL)
			status, body := apiBody(t, client, req)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("after revocation: %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
			if req.Header.Get("Authorization") != "" {
				t.Error("Transport modified the caller's request")
			}
			// Replayed or not, the rejected token was dropped: the next
			// call has a new one.
			if status, _ := apiBody(t, client, tt.newRequest(srv.APIURL)); status != 200 {
				t.Errorf("next call: %d, want 200", status)
			}
			wantCalls := 4 // first, 401, retry, next
			if tt.wantStatus == 401 {
				wantCalls = 3
			}
			if got := srv.Stats(); got.APICalls != wantCalls || got.Refreshes != 2 {
				t.Errorf("server stats = %+v, want %d API calls, 2 refreshes", got, wantCalls)
			}
		})
	}
}

// TestTransport401Burst: 50 goroutines get 401 for the same token at once:
// one refresh.
func TestTransport401Burst(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	client := refreshtoken.NewClient(context.Background(), ts)
	get := func() int {
		resp, err := client.Get(srv.APIURL)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get() != 200 {
		t.Fatal("first call failed")
	}
	srv.RevokeAccessTokens()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if status := get(); status != 200 {
				t.Errorf("status %d, want 200 after one retry", status)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := srv.Stats(); got.Refreshes != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 2 refreshes: one for the whole burst", got)
	}
}

// TestTransportReplacedTokenInFlight: a request sent with a token that was
// replaced while it was in flight (as ory/fosite revokes the old access
// token at refresh) is retried with the new token, with no new refresh.
func TestTransportReplacedTokenInFlight(t *testing.T) {
	clock := newFakeClock(t0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	defer srv.Close()
	var once sync.Once
	var ts *refreshtoken.TokenSource
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/api" {
			once.Do(func() {
				// While this request is in flight, the token is refreshed
				// twice and the server revokes the access tokens before the
				// last.
				clock.Set(t0.Add(time.Hour))
				if _, err := ts.Token(); err != nil {
					t.Error(err)
				}
				srv.RevokeAccessTokens()
				clock.Set(t0.Add(2 * time.Hour))
				if _, err := ts.Token(); err != nil {
					t.Error(err)
				}
			})
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	ts = refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, refreshtoken.WithClock(clock.Now))
	defer ts.Close()
	mustToken(t, ts)
	client := &http.Client{Transport: &refreshtoken.Transport{Source: ts, Base: base}}
	resp, err := client.Get(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
	if got := srv.Stats(); got.Refreshes != 3 || got.APIRejected != 1 {
		t.Errorf("server stats = %+v, want 3 refreshes (start-up, two in flight) and one 401: no refresh for the retry", got)
	}
}

// TestTransportGivesUpWithoutToken: when no token can be had, the caller
// gets the 401 as it came.
func TestTransportGivesUpWithoutToken(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	client := refreshtoken.NewClient(context.Background(), ts)
	mustToken(t, ts)
	srv.RevokeAccessTokens()
	srv.Inject(-1, refreshtokentest.Fault{Status: 503})
	resp, err := client.Get(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "invalid or expired") {
		t.Errorf("got %d %q, want the API's 401 with its body", resp.StatusCode, b)
	}
	// The token is gone and the refresh failed: the next request fails
	// fast with the refresh error, without a request to the endpoint.
	if _, err := client.Get(srv.APIURL); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("next request error = %v, want the 503 of the refresh", err)
	}
	if got := srv.Stats().TokenRequests; got != 2 {
		t.Errorf("token requests = %d, want 2", got)
	}
}

// TestNewClientUsesContextClient: as oauth2.NewClient, the base transport
// comes from the context.
func TestNewClientUsesContextClient(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	var seen []string
	var mu sync.Mutex
	hc := &http.Client{Timeout: time.Minute, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})}
	client := refreshtoken.NewClient(context.WithValue(context.Background(), oauth2.HTTPClient, hc), ts)
	if client.Timeout != time.Minute {
		t.Errorf("Timeout = %v, want the context client's", client.Timeout)
	}
	resp, err := client.Get(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tok := mustToken(t, ts)
	if len(seen) != 1 || seen[0] != "Bearer "+tok.AccessToken {
		t.Errorf("base transport saw %q, want one request with the token", seen)
	}
}

// TestTransportPersistent401: an API that rejects every token (a wrong
// audience, say) does not get a refresh per request: a newly refreshed
// token rejected in turn starts a back-off.
func TestTransportPersistent401(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts := setup(t, clock, refreshtokentest.Config{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "wrong audience", http.StatusUnauthorized)
	}))
	defer api.Close()
	client := refreshtoken.NewClient(context.Background(), ts)
	for i := range 10 {
		resp, err := client.Get(api.URL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("request %d: %d, want 401", i, resp.StatusCode)
			}
		} else if !strings.Contains(err.Error(), "rejected a newly refreshed token") {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if got := srv.Stats().TokenRequests; got != 2 {
		t.Errorf("token requests = %d, want 2: the first token and one replacement", got)
	}
	clock.Add(time.Second) // past the back-off: one more try
	if resp, err := client.Get(api.URL); err == nil {
		resp.Body.Close()
	}
	if got := srv.Stats().TokenRequests; got != 3 {
		t.Errorf("token requests after the back-off = %d, want 3", got)
	}
}

// trackedBody is a request or response body that records whether it was
// closed.
type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error {
	b.closed = true
	return nil
}

// TestTransportBaseBreaksContract: a Base that returns neither a response
// nor an error, or both, at the first send or at the retry after a 401,
// does not make RoundTrip panic nor break its contract: the caller gets an
// error and no response, as http.Client would give, and every body is
// closed.
func TestTransportBaseBreaksContract(t *testing.T) {
	errBase := errors.New("base failed")
	// reply is one answer of the Base; status 0 is a nil *http.Response.
	type reply struct {
		status int
		body   bool
		err    error
	}
	tests := []struct {
		name       string
		replies    []reply // the Base's answers, in order
		wantStatus int     // 0: an error
		wantErr    error   // nil: any error prefixed refreshtoken:
	}{
		{name: "nil, nil", replies: []reply{{}}},
		{name: "nil, nil at the retry", replies: []reply{{status: 401, body: true}, {}}},
		{name: "response and error", replies: []reply{{status: 200, body: true, err: errBase}}, wantErr: errBase},
		{name: "response and error at the retry", replies: []reply{{status: 401, body: true}, {status: 200, body: true, err: errBase}}, wantErr: errBase},
		{name: "401 with a nil Body", replies: []reply{{status: 401}, {status: 200, body: true}}, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			_, ts := setup(t, clock, refreshtokentest.Config{})
			mustToken(t, ts)
			var bodies []*trackedBody
			newBody := func(s string) *trackedBody {
				b := &trackedBody{Reader: strings.NewReader(s)}
				bodies = append(bodies, b)
				return b
			}
			calls := 0
			// The Base closes the request body only when it answers as it
			// should, with a response and no error: when it breaks the
			// contract, the Transport must close the body.
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				rep := tt.replies[calls]
				calls++
				if rep.status != 0 && rep.err == nil {
					r.Body.Close()
				}
				var resp *http.Response
				if rep.status != 0 {
					resp = &http.Response{StatusCode: rep.status, Header: http.Header{}, Request: r}
					if rep.body {
						resp.Body = newBody("answer")
					}
				}
				return resp, rep.err
			})
			req, err := http.NewRequest(http.MethodPost, "http://api.invalid/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Body = newBody("payload")
			req.GetBody = func() (io.ReadCloser, error) { return newBody("payload"), nil }

			resp, err := (&refreshtoken.Transport{Source: ts, Base: base}).RoundTrip(req)
			if calls != len(tt.replies) {
				t.Errorf("Base called %d times, want %d", calls, len(tt.replies))
			}
			switch {
			case tt.wantStatus != 0:
				if err != nil || resp == nil || resp.StatusCode != tt.wantStatus {
					t.Fatalf("RoundTrip() = %v, %v; want status %d", resp, err, tt.wantStatus)
				}
				resp.Body.Close() // the caller's to close
			case resp != nil || err == nil:
				t.Errorf("RoundTrip() = %v, %v; want no response and an error", resp, err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("RoundTrip() error = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && !strings.HasPrefix(err.Error(), "refreshtoken: "):
				t.Errorf("RoundTrip() error = %q, want one prefixed refreshtoken:", err)
			}
			for i, b := range bodies {
				if !b.closed {
					t.Errorf("body %d of %d was not closed", i+1, len(bodies))
				}
			}
		})
	}
}

// TestRevokingServerEarlyRefresh: ory/fosite and Ory Hydra revoke the
// previous access token when a refresh rotates, so requests in flight with
// it are answered 401 while the refresh that replaced it is still on its
// way back. Such a 401 is not a sign that tokens are rejected: round after
// round, the token the refresh brings is handed out, and no caller gets an
// error (interop/ found callers getting errTokenRejected from the second
// round on). The second row starts from a token fetched after a real 401,
// so that the guard against an API that rejects every token is armed; at
// the end, a first real 401 still brings a new token, not a back-off.
func TestRevokingServerEarlyRefresh(t *testing.T) {
	for _, tt := range []struct {
		name       string
		forcedOnce bool // the first token is replaced after a 401 first
	}{
		{name: "early refreshes"},
		{name: "after a forced refresh", forcedOnce: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, RevokeReplacedAccess: true})
			defer srv.Close()
			// A proxy in front of the token endpoint holds each answer
			// once armed: the server has rotated (and revoked the access
			// token before) but the client does not know yet.
			var armed atomic.Bool
			rotated, release := make(chan struct{}, 1), make(chan struct{})
			target, _ := url.Parse(srv.URL)
			proxy := httputil.NewSingleHostReverseProxy(target)
			proxy.ModifyResponse = func(*http.Response) error {
				if armed.Load() {
					rotated <- struct{}{}
					<-release
				}
				return nil
			}
			front := httptest.NewServer(proxy)
			defer front.Close()
			conf := srv.Config()
			conf.Endpoint.TokenURL = front.URL + "/oauth/token"
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
				refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0))
			defer ts.Close()
			api := func(tok *oauth2.Token) int {
				req, _ := http.NewRequest(http.MethodGet, srv.APIURL, nil)
				tok.SetAuthHeader(req)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}

			tok := mustToken(t, ts)
			if tt.forcedOnce {
				srv.RevokeAccessTokens()
				if got := api(tok); got != http.StatusUnauthorized {
					t.Fatalf("API with a revoked token: %d, want 401", got)
				}
				ts.InvalidateToken(tok)
				tok = mustToken(t, ts) // fetched because of a 401: forced
				if got := api(tok); got != http.StatusOK {
					t.Fatalf("API with the forced token: %d, want 200", got)
				}
			}
			armed.Store(true)
			for round := range 4 {
				// Stale (a minute before the real expiry; the Expiry handed
				// out is earlier): Token starts a refresh.
				expiry, _ := srv.AccessExpiry(tok.AccessToken)
				clock.Set(expiry.Add(-time.Minute))
				if got := mustToken(t, ts); got.AccessToken != tok.AccessToken {
					t.Fatalf("round %d: a stale token was not served", round)
				}
				recv(t, "the rotation", rotated)
				// A request in flight with the old token, as Transport
				// makes it.
				if got := api(tok); got != http.StatusUnauthorized {
					t.Fatalf("round %d: API with the replaced token: %d, want 401 (the server revokes it)", round, got)
				}
				ts.InvalidateToken(tok)
				release <- struct{}{}
				next, err := ts.Token()
				if err != nil {
					t.Fatalf("round %d: Token() error = %v, want the token the refresh brought", round, err)
				}
				if next.AccessToken == tok.AccessToken || api(next) != http.StatusOK {
					t.Fatalf("round %d: Token() did not hand out the new, valid token", round)
				}
				tok = next
			}
			// A 401 in flight during an early refresh did not make its
			// token one fetched because of a 401: a first real 401 for it
			// is answered with a refresh, not a back-off.
			armed.Store(false)
			srv.RevokeAccessTokens()
			if got := api(tok); got != http.StatusUnauthorized {
				t.Fatalf("API with a revoked token: %d, want 401", got)
			}
			ts.InvalidateToken(tok)
			if next, err := ts.Token(); err != nil || api(next) != http.StatusOK {
				t.Fatalf("after a first real 401: Token() error = %v, want a new valid token", err)
			}
			if got := srv.Stats(); got.ReuseEvents != 0 {
				t.Errorf("server stats = %+v, want no reuse", got)
			}
		})
	}
}
