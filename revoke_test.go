package refreshtoken_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// revoked records what the revocation endpoint was sent.
type revoked struct {
	mu       sync.Mutex
	tokens   []string // the token parameters, in order
	hints    []string
	basic    []bool
	ctypes   []string
	onRevoke func() // called in the hook, if set
}

// hook is a refreshtokentest OnRevokeRequest hook. ParseForm is
// idempotent: the handler reads the same form after it.
func (l *revoked) hook(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ct := r.Header.Get("Content-Type")
	var token, hint string
	if strings.HasPrefix(ct, "application/json") {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		var m map[string]string
		json.Unmarshal(b, &m)
		token, hint = m["token"], m["token_type_hint"]
	} else {
		r.ParseForm()
		token, hint = r.PostForm.Get("token"), r.PostForm.Get("token_type_hint")
	}
	_, _, basic := r.BasicAuth()
	l.tokens, l.hints, l.basic, l.ctypes = append(l.tokens, token), append(l.hints, hint), append(l.basic, basic), append(l.ctypes, ct)
	if l.onRevoke != nil {
		l.onRevoke()
	}
}

func (l *revoked) sent() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tokens...)
}

// revokeSetup is setup with the revocation endpoint, whose requests l
// records.
func revokeSetup(t *testing.T, clock *fakeClock, cfg refreshtokentest.Config, l *revoked, opts ...refreshtoken.Option) (*refreshtokentest.Server, *refreshtoken.TokenSource, string) {
	t.Helper()
	cfg.Clock = clock.Now
	cfg.OnRevokeRequest = l.hook
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	rt := srv.NewRefreshToken("openid offline_access")
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0),
		refreshtoken.WithRevocationURL(srv.RevokeURL), refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil))}, opts...)
	conf := srv.Config()
	if cfg.Public {
		conf.ClientSecret = ""
	}
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt}, opts...)
	t.Cleanup(func() { ts.Close() })
	return srv, ts, rt
}

// TestRevoke: Revoke sends the refresh token with the client's
// authentication, in the refresh request's encoding; the family is
// revoked; the source returns ErrRevoked with no request until SetToken;
// a second Revoke sends nothing.
func TestRevoke(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       refreshtokentest.Config
		style     oauth2.AuthStyle
		opts      []refreshtoken.Option
		wantBasic bool
		wantCT    string
	}{
		{name: "secret in body", wantCT: "application/x-www-form-urlencoded"},
		{name: "HTTP Basic", style: oauth2.AuthStyleInHeader, wantBasic: true, wantCT: "application/x-www-form-urlencoded"},
		{name: "JSON body", opts: []refreshtoken.Option{refreshtoken.WithJSONBody()}, wantCT: "application/json"},
		{name: "public client", cfg: refreshtokentest.Config{Public: true}, wantCT: "application/x-www-form-urlencoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			l := &revoked{}
			cfg := tc.cfg
			cfg.Clock = clock.Now
			cfg.OnRevokeRequest = l.hook
			srv := refreshtokentest.NewServer(cfg)
			t.Cleanup(srv.Close)
			rt := srv.NewRefreshToken("openid offline_access")
			conf := srv.Config()
			conf.Endpoint.AuthStyle = tc.style
			opts := append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithRevocationURL(srv.RevokeURL),
				refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil))}, tc.opts...)
			ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt}, opts...)
			t.Cleanup(func() { ts.Close() })

			mustToken(t, ts)
			rotated, _ := srv.Newest(rt)
			if err := ts.Revoke(context.Background()); err != nil {
				t.Fatalf("Revoke() = %v", err)
			}
			if got := l.sent(); len(got) != 1 || got[0] != rotated {
				t.Fatalf("revocation sent %d tokens (%v), want the rotated refresh token once", len(got), got)
			}
			if l.hints[0] != "refresh_token" || l.basic[0] != tc.wantBasic || !strings.HasPrefix(l.ctypes[0], tc.wantCT) {
				t.Errorf("revocation request: hint %q, Basic %v, Content-Type %q; want refresh_token, %v, %s", l.hints[0], l.basic[0], l.ctypes[0], tc.wantBasic, tc.wantCT)
			}
			if _, alive := srv.Newest(rt); alive {
				t.Error("the family is alive after Revoke")
			}
			requests := srv.Stats().TokenRequests
			clock.Add(2 * time.Hour)
			for range 2 {
				if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
					t.Errorf("Token() after Revoke = %v, want ErrRevoked", err)
				}
			}
			if err := ts.Revoke(context.Background()); err != nil {
				t.Errorf("second Revoke() = %v, want nil", err)
			}
			if err := ts.Forget(context.Background()); err != nil {
				t.Errorf("Forget() after Revoke = %v, want nil", err)
			}
			s := srv.Stats()
			if s.TokenRequests != requests || s.RevokeRequests != 1 || s.Revocations != 1 || s.ReuseEvents != 0 || s.ReplacedSent != 0 {
				t.Errorf("stats = %+v; want no token request after Revoke, 1 revocation request, no reuse", s)
			}

			// A new login brings the source back.
			if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")}); err != nil {
				t.Fatal(err)
			}
			mustToken(t, ts)
		})
	}
}

// TestRevokeDropsCachedAccessToken: a fresh access token is not handed
// out after Revoke, nor brought back by Invalidate.
func TestRevokeDropsCachedAccessToken(t *testing.T) {
	clock := newFakeClock(t0)
	_, ts, _ := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{})
	mustToken(t, ts)
	if err := ts.Revoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.Invalidate()
	if tok, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("Token() right after Revoke = %v, %v; want ErrRevoked", tok, err)
	}
	if h := ts.Health(); h.Ready || !errors.Is(h.Err, refreshtoken.ErrRevoked) {
		t.Errorf("Health() = %+v; want not ready, ErrRevoked", h)
	}
}

// TestRevokeNotConfigured: without a usable revocation URL, or for a
// Cache source, Revoke sends nothing and the token is kept.
func TestRevokeNotConfigured(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	for _, tc := range []struct {
		name    string
		opts    []refreshtoken.Option
		wantErr string
	}{
		{"no URL", nil, "WithRevocationURL"},
		{"plain http to another host", []refreshtoken.Option{refreshtoken.WithRevocationURL("http://auth.example.com/oauth/revoke")}, "must use https"},
		{"unparsable", []refreshtoken.Option{refreshtoken.WithRevocationURL("http://127.0.0.1:99999999/%zz")}, "bad revocation URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now)}, tc.opts...)
			ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")}, opts...)
			defer ts.Close()
			mustToken(t, ts)
			if err := ts.Revoke(context.Background()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Revoke() = %v, want an error saying %q", err, tc.wantErr)
			}
			mustToken(t, ts)
		})
	}
	ts := refreshtoken.Cache(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "at"}), refreshtoken.WithRevocationURL(srv.RevokeURL))
	defer ts.Close()
	if err := ts.Revoke(context.Background()); err == nil {
		t.Error("Revoke() of a Cache source = nil, want an error")
	}
	if err := ts.Forget(context.Background()); err == nil {
		t.Error("Forget() of a Cache source = nil, want an error")
	}
	if got := srv.Stats().RevokeRequests; got != 0 {
		t.Errorf("revocation requests = %d, want 0", got)
	}
}

// TestRevokeFailureKeepsToken: a revocation that fails is the caller's
// error, and the token is kept, at the server and in the source, until
// Forget drops it.
func TestRevokeFailureKeepsToken(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fault      refreshtokentest.Fault
		wantStatus int // of the RetrieveError; 0: none
	}{
		{"503", refreshtokentest.Fault{Status: 503, Header: http.Header{"Retry-After": {"5"}}}, 503},
		{"500", refreshtokentest.Fault{Status: 500}, 500},
		{"invalid_client", refreshtokentest.Fault{Status: 401, Error: "invalid_client"}, 401},
		{"400", refreshtokentest.Fault{Status: 400, Error: "unsupported_token_type"}, 400},
		{"connection dropped", refreshtokentest.Fault{Drop: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			st := sharedStore(0)
			srv, ts, rt := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{}, refreshtoken.WithStore(st))
			tok := mustToken(t, ts)
			srv.InjectRevoke(1, tc.fault)
			err := ts.Revoke(context.Background())
			if err == nil {
				t.Fatal("Revoke() = nil, want the failure")
			}
			var re *oauth2.RetrieveError
			switch {
			case tc.wantStatus != 0 && (!errors.As(err, &re) || re.Response.StatusCode != tc.wantStatus):
				t.Errorf("Revoke() = %v; want a RetrieveError with status %d", err, tc.wantStatus)
			case tc.wantStatus == 0 && errors.As(err, &re):
				t.Errorf("Revoke() = %v; want no RetrieveError", err)
			}
			if errors.Is(err, refreshtoken.ErrRevoked) || !strings.Contains(err.Error(), "kept") {
				t.Errorf("Revoke() = %v; want an error that says the token is kept", err)
			}
			if _, alive := srv.Newest(rt); !alive {
				t.Fatal("the family was revoked")
			}
			if got := mustToken(t, ts); got.AccessToken != tok.AccessToken {
				t.Error("Token() after a failed Revoke does not hand out the cached token")
			}
			if stored := st.Stored(); stored == nil || stored.AccessToken != tok.AccessToken || st.Locked() {
				t.Errorf("store after a failed Revoke: %v, locked %v; want the token, unlocked", stored, st.Locked())
			}

			requests := srv.Stats().RevokeRequests
			if err := ts.Forget(context.Background()); err != nil {
				t.Fatalf("Forget() = %v", err)
			}
			if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
				t.Errorf("Token() after Forget = %v, want ErrRevoked", err)
			}
			if stored := st.Stored(); stored == nil || stored.AccessToken != "" || stored.RefreshToken != "refreshtoken:signed-out" {
				t.Errorf("store after Forget holds %+v; want the sign-out", stored)
			}
			if _, alive := srv.Newest(rt); !alive || srv.Stats().RevokeRequests != requests {
				t.Error("Forget told the server")
			}
		})
	}
}

// TestRevokeLostAnswer: a revocation whose answer is lost is an error,
// and the token is kept; Revoke again succeeds, since the server accepts
// a revoked token.
func TestRevokeLostAnswer(t *testing.T) {
	clock := newFakeClock(t0)
	l := &revoked{}
	srv, ts, rt := revokeSetup(t, clock, refreshtokentest.Config{}, l)
	mustToken(t, ts)
	srv.InjectRevoke(1, refreshtokentest.Fault{DropAfterRotate: true})
	if err := ts.Revoke(context.Background()); err == nil {
		t.Fatal("Revoke() with the answer lost = nil")
	}
	if _, alive := srv.Newest(rt); alive {
		t.Fatal("the fault did not revoke the family")
	}
	if err := ts.Revoke(context.Background()); err != nil {
		t.Fatalf("Revoke() again = %v, want nil", err)
	}
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("Token() = %v, want ErrRevoked", err)
	}
	if got := l.sent(); len(got) != 2 || got[0] != got[1] {
		t.Errorf("revocations sent %v, want the same token twice", got)
	}
}

// TestRevokeSecretsNotInErrors: a revocation endpoint that echoes the
// request in every part of its answer gets no secret into the error.
func TestRevokeSecretsNotInErrors(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		said := string(b) + " " + r.Header.Get("Authorization")
		w.Header().Set("X-Echo", said)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request " + said, "error_description": said, "error_uri": said})
	}))
	defer echo.Close()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader} {
		clock, srv := newServer(t, refreshtokentest.Config{})
		conf := srv.Config()
		conf.Endpoint.AuthStyle = style
		rt := srv.NewRefreshToken("")
		ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: rt},
			refreshtoken.WithClock(clock.Now), refreshtoken.WithRevocationURL(echo.URL), refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil)))
		defer ts.Close()
		mustToken(t, ts)
		err := ts.Revoke(context.Background())
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) {
			t.Fatalf("Revoke() = %v, want a RetrieveError", err)
		}
		text := fmt.Sprintf("%v %+v %#v %s %v", err, re, re, re.Body, re.Response.Header)
		for _, l := range secretsIn(text, srv.Secrets()) {
			t.Errorf("secret in the error: %s", l)
		}
		if !strings.Contains(text, "[redacted]") {
			t.Errorf("error %q: want the echo, redacted", text)
		}
	}
}

// TestRevokeWaitsForRefreshInFlight: Revoke called while a refresh is in
// flight waits for it, and revokes the refresh token it brought; the one
// it replaced is never sent again.
func TestRevokeWaitsForRefreshInFlight(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	l := &revoked{}
	srv, ts, rt := revokeSetup(t, clock, refreshtokentest.Config{OnTokenRequest: g.holdWhenArmed}, l)
	mustToken(t, ts)
	g.armed.Store(true)
	clock.Add(time.Hour)
	got := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		got <- err
	}()
	recv(t, "the refresh", g.arrived)
	before, _ := srv.Newest(rt) // the refresh token being sent
	revokeCalled, revokeDone := make(chan struct{}), make(chan error, 1)
	go func() {
		close(revokeCalled)
		revokeDone <- ts.Revoke(context.Background())
	}()
	<-revokeCalled
	select {
	case err := <-revokeDone:
		t.Fatalf("Revoke() = %v while the refresh was in flight; want it to wait", err)
	default:
	}
	close(g.release)
	if err := recv(t, "the refresh's caller", got); err != nil {
		t.Fatalf("Token() = %v", err)
	}
	if err := recv(t, "Revoke", revokeDone); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}
	rotated, alive := srv.Newest(rt)
	if rotated == before {
		t.Fatal("the refresh did not rotate the refresh token")
	}
	if sent := l.sent(); len(sent) != 1 || sent[0] != rotated {
		t.Errorf("revoked %d tokens, want the rotated one (the one sent by the refresh: %v)", len(sent), len(sent) == 1 && sent[0] == before)
	}
	s := srv.Stats()
	if alive || s.Revocations != 1 || s.ReuseEvents != 0 || s.ReplacedSent != 0 {
		t.Errorf("family alive %v, stats %+v; want it revoked once, no reuse", alive, s)
	}
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("Token() = %v, want ErrRevoked", err)
	}
}

// TestRevokeSharedStore: a replica that holds a stale refresh token
// revokes the latest one, from the store, under the store's lock; the
// sign-out in the store stops the other replica at its next refresh, with
// no request; SetToken brings it back.
func TestRevokeSharedStore(t *testing.T) {
	clock := newFakeClock(t0)
	st := sharedStore(0)
	l := &revoked{}
	var revokedEvents []refreshtoken.Revoked
	var mu sync.Mutex
	obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e, ok := e.(refreshtoken.Revoked); ok {
			revokedEvents = append(revokedEvents, e)
		}
	})
	l.onRevoke = func() {
		if !st.Locked() {
			t.Error("the store's lock is not held during the revocation request")
		}
	}
	srv, a, rt := revokeSetup(t, clock, refreshtokentest.Config{}, l, refreshtoken.WithStore(st))
	b := replica(t, srv, clock, st, rt, refreshtoken.WithRevocationURL(srv.RevokeURL), refreshtoken.WithObserver(obs))
	mustToken(t, a)
	mustToken(t, b) // from the store
	clock.Add(time.Hour)
	atok := mustToken(t, a) // a rotates; b's refresh token is stale
	latest, _ := srv.Newest(rt)

	if err := b.Revoke(context.Background()); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}
	if sent := l.sent(); len(sent) != 1 || sent[0] != latest {
		t.Fatalf("revoked %d tokens, want the latest one, from the store", len(sent))
	}
	if stored := st.Stored(); stored == nil || stored.AccessToken != "" || stored.RefreshToken != "refreshtoken:signed-out" {
		t.Errorf("store holds %+v, want the sign-out", stored)
	}
	if st.Locked() {
		t.Error("the lock is held after Revoke")
	}
	if _, err := b.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("b.Token() = %v, want ErrRevoked", err)
	}

	// a hands out its access token until its next refresh, which finds
	// the sign-out and sends nothing.
	if got := mustToken(t, a); got.AccessToken != atok.AccessToken {
		t.Error("a's fresh access token is not handed out")
	}
	requests := srv.Stats().TokenRequests
	clock.Add(time.Hour)
	if _, err := a.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("a.Token() at its next refresh = %v, want ErrRevoked", err)
	}
	if err := a.Revoke(context.Background()); err != nil {
		t.Errorf("a.Revoke() of a token b revoked = %v, want nil", err)
	}
	s := srv.Stats()
	if s.TokenRequests != requests || s.RevokeRequests != 1 || s.ReuseEvents != 0 || s.ReplacedSent != 0 {
		t.Errorf("stats %+v; want no token request after the sign-out, one revocation, no reuse", s)
	}

	// A new login in a; b stays signed out until its own SetToken.
	if err := a.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("openid")}); err != nil {
		t.Fatal(err)
	}
	mustToken(t, a)
	if _, err := b.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("b.Token() after a's new login = %v, want ErrRevoked until b's SetToken", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(revokedEvents) != 1 || !revokedEvents[0].Sent || !revokedEvents[0].Dropped || revokedEvents[0].Status != 200 ||
		revokedEvents[0].Fingerprint != refreshtoken.Fingerprint(latest) || revokedEvents[0].Err != nil {
		t.Errorf("b's Revoked events = %+v; want one, sent, dropped, 200, of the latest token", revokedEvents)
	}
}

// TestRevokedInStoreOutcome: a refresh that finds the sign-out in the
// store ends with OutcomeRevoked.
func TestRevokedInStoreOutcome(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	st := sharedStore(0)
	var outcomes []refreshtoken.Outcome
	obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
		if e, ok := e.(refreshtoken.RefreshEnded); ok {
			outcomes = append(outcomes, e.Outcome)
		}
	})
	rt := srv.NewRefreshToken("")
	a := replica(t, srv, clock, st, rt, refreshtoken.WithRevocationURL(srv.RevokeURL))
	b := replica(t, srv, clock, st, rt, refreshtoken.WithObserver(obs))
	mustToken(t, a)
	if err := a.Revoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("b.Token() = %v, want ErrRevoked", err)
	}
	if len(outcomes) != 1 || outcomes[0] != refreshtoken.OutcomeRevoked {
		t.Errorf("b's outcomes = %v, want [revoked]", outcomes)
	}
}

// TestRevokeWaitsForFleetLock: Revoke waits for the store's lock, held by
// another process, and gives up with its context, sending nothing.
func TestRevokeWaitsForFleetLock(t *testing.T) {
	clock := newFakeClock(t0)
	st := sharedStore(0)
	srv, ts, rt := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{}, refreshtoken.WithStore(st))
	mustToken(t, ts)
	_, unlock, err := st.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.Revoke(ctx) }()
	eventually(t, "Revoke waiting for the lock", func() bool { return st.Stats().Waits > 0 })
	cancel()
	if err := recv(t, "Revoke", done); !errors.Is(err, context.Canceled) {
		t.Errorf("Revoke() cancelled while waiting for the lock = %v, want context.Canceled", err)
	}
	if _, alive := srv.Newest(rt); !alive || srv.Stats().RevokeRequests != 0 {
		t.Error("Revoke sent a request without the lock")
	}
	mustToken(t, ts)
	unlock(context.Background())
	if err := ts.Revoke(context.Background()); err != nil {
		t.Errorf("Revoke() with the lock free = %v", err)
	}
}

// TestRevokeSaveFails: the server revoked the token, the store cannot
// take the sign-out: the source is signed out, the error wraps
// ErrNotSaved, and Flush saves the sign-out.
func TestRevokeSaveFails(t *testing.T) {
	clock := newFakeClock(t0)
	st := sharedStore(0)
	_, ts, _ := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{}, refreshtoken.WithStore(st))
	mustToken(t, ts)
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	err := ts.Revoke(context.Background())
	if !errors.Is(err, refreshtoken.ErrNotSaved) || !errors.Is(err, errBroken) {
		t.Fatalf("Revoke() with saves failing = %v, want ErrNotSaved wrapping the store's error", err)
	}
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("Token() = %v, want ErrRevoked", err)
	}
	if err := ts.Flush(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Errorf("Flush() with saves failing = %v, want ErrNotSaved", err)
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	if err := ts.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	if stored := st.Stored(); stored == nil || stored.RefreshToken != "refreshtoken:signed-out" {
		t.Errorf("store holds %+v after Flush, want the sign-out", stored)
	}
}

// TestRevokeFileStore: the sign-out in a filestore stops a source that
// a later process makes on it, with no request.
func TestRevokeFileStore(t *testing.T) {
	clock := newFakeClock(t0)
	path := filepath.Join(t.TempDir(), "token.json")
	srv, ts, rt := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{}, refreshtoken.WithStore(filestore.New(path)))
	mustToken(t, ts)
	if err := ts.Revoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	later := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(filestore.New(path)))
	defer later.Close()
	requests := srv.Stats().TokenRequests
	if _, err := later.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("Token() of a source on the signed-out file = %v, want ErrRevoked", err)
	}
	if srv.Stats().TokenRequests != requests {
		t.Error("a request was sent")
	}
}

// TestRevokeAfterClose: Revoke and Forget after Close return ErrClosed
// and send nothing.
func TestRevokeAfterClose(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts, rt := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{})
	mustToken(t, ts)
	ts.Close()
	if err := ts.Revoke(context.Background()); !errors.Is(err, refreshtoken.ErrClosed) {
		t.Errorf("Revoke() after Close = %v, want ErrClosed", err)
	}
	if err := ts.Forget(context.Background()); !errors.Is(err, refreshtoken.ErrClosed) {
		t.Errorf("Forget() after Close = %v, want ErrClosed", err)
	}
	if _, alive := srv.Newest(rt); !alive {
		t.Error("the family was revoked")
	}
}

// A Revoke that fails must not release the fleet lock kept for a pending
// Save of a rotated refresh token: another process would send the retired
// one.
func TestRevokeFailureKeepsHeldLock(t *testing.T) {
	clock := newFakeClock(t0)
	st := refreshtokentest.NewMemoryStore(clock.Now, time.Hour)
	srv, a, rt := revokeSetup(t, clock, refreshtokentest.Config{}, &revoked{}, refreshtoken.WithStore(st))
	mustToken(t, a)
	clock.Add(2 * time.Hour)
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	a.Token() // rotates; the Save fails: the lock is kept
	if !st.Locked() {
		t.Fatal("lock not kept after the failed Save")
	}
	srv.InjectRevoke(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	if err := a.Revoke(context.Background()); err == nil {
		t.Fatal("Revoke succeeded")
	}
	if !st.Locked() {
		t.Error("the failed Revoke released the lock kept for the pending Save")
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	b := replica(t, srv, clock, st, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b.TokenContext(ctx)
	if s := srv.Stats(); s.ReuseEvents != 0 || s.ReplacedSent != 0 {
		t.Errorf("another process sent the retired refresh token: %+v", s)
	}
}

// TestCacheObeysSignOut: a Cache source that loads the sign-out from its
// store is signed out, as every source is: it asks its inner source for
// nothing and leaves the sign-out in the store.
func TestCacheObeysSignOut(t *testing.T) {
	clock := newFakeClock(t0)
	st := refreshtokentest.NewMemoryStore(clock.Now, 0)
	st.Put(&oauth2.Token{RefreshToken: "refreshtoken:signed-out"})
	src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: t0.Add(time.Hour)})
	ts := refreshtoken.Cache(src, refreshtoken.WithStore(st), refreshtoken.WithClock(clock.Now))
	defer ts.Close()
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
		t.Errorf("Token() = %v, want ErrRevoked", err)
	}
	if got := st.Stored().RefreshToken; got != "refreshtoken:signed-out" {
		t.Error("the Cache source replaced the sign-out in the store")
	}
}
