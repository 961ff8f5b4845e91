package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// The APIs of the audience tests: one refresh token, access tokens for
// each.
const apiA, apiB, apiC = "https://api-a.test", "https://api-b.test", "https://api-c.test"

// newGroup returns a source for auds[0] made by New from rt (the primary),
// followed by its Audience sources for the others, all closed at the
// test's end.
func newGroup(t *testing.T, srv *refreshtokentest.Server, clock *fakeClock, rt string, auds []string, opts ...refreshtoken.Option) []*refreshtoken.TokenSource {
	t.Helper()
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0),
		refreshtoken.WithEndpointParams(url.Values{"audience": {auds[0]}}),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, nil))}, opts...)
	primary := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt}, opts...)
	srcs := []*refreshtoken.TokenSource{primary}
	for _, aud := range auds[1:] {
		srcs = append(srcs, primary.Audience(aud))
	}
	t.Cleanup(func() {
		for _, ts := range srcs {
			ts.Close()
		}
	})
	return srcs
}

// audienceOf returns the audience the server issued access for, or an
// error if it never issued it.
func audienceOf(srv *refreshtokentest.Server, access string) (string, error) {
	aud, ok := srv.AccessAudience(access)
	if !ok {
		return "", errors.New("an access token the server never issued")
	}
	return aud, nil
}

// tokenFor gets a token from ts and checks that it is for aud.
func tokenFor(t *testing.T, srv *refreshtokentest.Server, ts *refreshtoken.TokenSource, aud string) *oauth2.Token {
	t.Helper()
	tok := mustToken(t, ts)
	if got, err := audienceOf(srv, tok.AccessToken); err != nil || got != aud {
		t.Fatalf("Token() of the source for %s: a token for %q (%v)", aud, got, err)
	}
	return tok
}

// callAll calls Token on every source from per goroutines each at once,
// and returns the first error, or a token for the wrong audience.
func callAll(srv *refreshtokentest.Server, srcs []*refreshtoken.TokenSource, auds []string, per int) error {
	errs := make(chan error, len(srcs)*per)
	var wg sync.WaitGroup
	for i, ts := range srcs {
		for range per {
			wg.Go(func() {
				tok, err := ts.Token()
				if err == nil {
					var got string
					if got, err = audienceOf(srv, tok.AccessToken); err == nil && got != auds[i] {
						err = fmt.Errorf("the source for %s handed out a token for %q", auds[i], got)
					}
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestAudiencesConcurrent: sources for two and three audiences of one
// refresh token, called from many goroutines at once, through lifetimes
// in which callers wait (expired tokens) and in which the early refreshes
// of every audience start together in the background. Each caller gets a
// token for its audience, each audience is refreshed once per lifetime,
// and the rotations are chained: no refresh token is sent twice.
func TestAudiencesConcurrent(t *testing.T) {
	for _, auds := range [][]string{{apiA, apiB}, {apiA, apiB, apiC}} {
		t.Run(fmt.Sprint(len(auds)), func(t *testing.T) {
			clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, Audiences: auds})
			rt := srv.NewRefreshToken("offline_access")
			srcs := newGroup(t, srv, clock, rt, auds)
			const lifetimes = 4
			for i := range lifetimes {
				// No valid token: callers wait, and the group's
				// refreshes run one after another.
				if err := callAll(srv, srcs, auds, 8); err != nil {
					t.Fatalf("lifetime %d, waiting: %v", i, err)
				}
				// The early window (2 min, no jitter) of every token:
				// the cached tokens are handed out, and every audience
				// starts its refresh in the background at once.
				clock.Add(59 * time.Minute)
				if err := callAll(srv, srcs, auds, 8); err != nil {
					t.Fatalf("lifetime %d, early: %v", i, err)
				}
				for _, aud := range auds {
					eventually(t, "the early refresh of "+aud, func() bool { return srv.AudienceRefreshes(aud) == 2*i+2 })
				}
				for _, ts := range srcs {
					refreshtoken.WaitIdle(ts)
				}
				clock.Add(61 * time.Minute) // the early refreshes' tokens expire
			}
			st := srv.Stats()
			for _, aud := range auds {
				if got := srv.AudienceRefreshes(aud); got != 2*lifetimes {
					t.Errorf("refreshes for %s = %d, want %d (one per token lifetime)", aud, got, 2*lifetimes)
				}
			}
			if st.ReuseEvents != 0 || st.ReplacedSent != 0 || st.TokenRequests != st.Refreshes {
				t.Errorf("server stats = %+v, want no reuse, no replaced token sent, every request a refresh", st)
			}
			if _, alive := srv.Newest(rt); !alive {
				t.Error("the family was revoked")
			}
		})
	}
}

// TestAudienceRefreshesSerialised holds the group's first refresh at the
// server while the other audiences' callers wait: no other request may
// arrive until it is answered, and each then sends the refresh token the
// one before got back. Sources that each sent the refresh token they
// held would send the same one three times: two reuses, and the family
// revoked.
func TestAudienceRefreshesSerialised(t *testing.T) {
	g := newGate()
	auds := []string{apiA, apiB, apiC}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, OnTokenRequest: g.holdWhenArmed})
	rt := srv.NewRefreshToken("offline_access")
	srcs := newGroup(t, srv, clock, rt, auds)
	for i, ts := range srcs {
		tokenFor(t, srv, ts, auds[i])
	}
	g.armed.Store(true)
	clock.Add(time.Hour)
	done := make(chan error)
	for i := range srcs {
		go func() { done <- callAll(srv, srcs[i:i+1], auds[i:i+1], 4) }()
	}
	for range auds {
		recv(t, "a refresh at the server", g.arrived)
		select {
		case <-g.arrived:
			t.Fatal("a second refresh of the group reached the server while the first was in flight")
		default:
		}
		g.release <- struct{}{}
	}
	for range auds {
		if err := recv(t, "the callers", done); err != nil {
			t.Error(err)
		}
	}
	st := srv.Stats()
	if st.ReuseEvents != 0 || st.ReplacedSent != 0 || st.Refreshes != 2*len(auds) || st.TokenRequests != st.Refreshes {
		t.Errorf("server stats = %+v, want %d refreshes, no reuse", st, 2*len(auds))
	}
}

// TestAudienceStoreRestart: the store keeps the latest refresh token,
// whichever audience rotated it, with the primary's access token, and so
// does the callback get it. After a restart the primary's access token is
// used with no request, whichever source is asked first, and each other
// audience refreshes once; no source ever hands out another audience's
// token.
func TestAudienceStoreRestart(t *testing.T) {
	for _, tc := range []struct {
		name           string
		shared         bool
		siblingsFirst  bool // after the restart
		primaryInvalid bool // the primary's token was dropped before the restart
	}{
		{name: "plain store"},
		{name: "plain store, siblings first", siblingsFirst: true},
		{name: "shared store", shared: true},
		{name: "shared store, siblings first", shared: true, siblingsFirst: true},
		{name: "dropped primary token", primaryInvalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auds := []string{apiA, apiB, apiC}
			clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
			mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
			var st refreshtoken.Store = plainStore{mem}
			if tc.shared {
				st = mem
			}
			var (
				mu        sync.Mutex
				callbacks []*oauth2.Token
			)
			onNew := refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
				mu.Lock()
				defer mu.Unlock()
				callbacks = append(callbacks, tok)
				return nil
			})
			rt := srv.NewRefreshToken("offline_access")
			first := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(st), onNew)
			primaryTok := tokenFor(t, srv, first[0], apiA)
			for i := 1; i < len(auds); i++ {
				tokenFor(t, srv, first[i], auds[i])
			}
			if tc.primaryInvalid {
				first[0].Invalidate()
				clock.Add(time.Hour)
				tokenFor(t, srv, first[2], apiC) // saved without the dropped token
			}
			newest, _ := srv.Newest(rt)
			stored := mem.Stored()
			if stored.RefreshToken != newest {
				t.Fatal("the store does not hold the latest refresh token, which a sibling rotated")
			}
			wantStored := primaryTok.AccessToken
			if tc.primaryInvalid {
				wantStored = ""
			}
			if stored.AccessToken != wantStored {
				t.Fatalf("stored access token is for %q, want the primary's (or none once dropped)", mustAudience(srv, stored.AccessToken))
			}
			mu.Lock()
			for _, tok := range callbacks {
				if tok.AccessToken != "" && mustAudience(srv, tok.AccessToken) != apiA {
					t.Errorf("the callback got an access token for %s", mustAudience(srv, tok.AccessToken))
				}
			}
			if last := callbacks[len(callbacks)-1]; last.RefreshToken != newest || last.AccessToken != stored.AccessToken {
				t.Error("the callback's last token is not the stored one")
			}
			mu.Unlock()
			for _, ts := range first {
				if err := ts.Close(); err != nil {
					t.Fatal(err)
				}
			}

			// The restart: a new group, given the first (long retired)
			// refresh token, which the store supersedes.
			before := srv.Stats().TokenRequests
			second := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(st))
			order := []int{0, 1, 2}
			if tc.siblingsFirst {
				order = []int{1, 2, 0}
			}
			for _, i := range order {
				tok := tokenFor(t, srv, second[i], auds[i])
				if i == 0 && !tc.primaryInvalid && tok.AccessToken != primaryTok.AccessToken {
					t.Error("the primary did not reuse its stored access token")
				}
			}
			want := len(auds) - 1
			if tc.primaryInvalid {
				want = len(auds)
			}
			if got := srv.Stats().TokenRequests - before; got != want {
				t.Errorf("requests after the restart = %d, want %d (one per audience other than the primary's)", got, want)
			}
			if st := srv.Stats(); st.ReuseEvents != 0 || st.ReplacedSent != 0 {
				t.Errorf("server stats = %+v, want no reuse", st)
			}
		})
	}
}

// mustAudience is the audience of an access token, or a description of
// what it is.
func mustAudience(srv *refreshtokentest.Server, access string) string {
	if access == "" {
		return "(none)"
	}
	aud, err := audienceOf(srv, access)
	if err != nil {
		return "(unknown)"
	}
	return aud
}

// TestAudienceFileStore: the same with filestore, the store of a real
// restart: a sibling's rotation lands in the file with the primary's
// access token.
func TestAudienceFileStore(t *testing.T) {
	auds := []string{apiA, apiB}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
	path := filepath.Join(t.TempDir(), "token.json")
	rt := srv.NewRefreshToken("offline_access")
	first := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(filestore.New(path)))
	a := tokenFor(t, srv, first[0], apiA)
	tokenFor(t, srv, first[1], apiB)
	for _, ts := range first {
		ts.Close()
	}
	newest, _ := srv.Newest(rt)
	if got := stored(t, path); got.RefreshToken != newest || got.AccessToken != a.AccessToken {
		t.Fatal("the file does not hold the latest refresh token with the primary's access token")
	}
	second := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(filestore.New(path)))
	before := srv.Stats().TokenRequests
	tokenFor(t, srv, second[1], apiB)
	if got := tokenFor(t, srv, second[0], apiA); got.AccessToken != a.AccessToken {
		t.Error("the primary did not reuse its stored access token")
	}
	if got := srv.Stats().TokenRequests - before; got != 1 {
		t.Errorf("requests after the restart = %d, want 1", got)
	}
}

// TestAudienceFleet: two processes, each with sources for two audiences,
// share a SharedStore: the fleet's lock covers every audience's refresh.
// The primary's audience, whose token the store keeps, is refreshed once
// per lifetime for the whole fleet; the other, once per lifetime per
// process; no refresh token is sent twice.
func TestAudienceFleet(t *testing.T) {
	auds := []string{apiA, apiB}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
	st := sharedStore(0)
	rt := srv.NewRefreshToken("offline_access")
	p1 := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(st))
	p2 := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(st))
	const lifetimes = 3
	for i := range lifetimes {
		errs := make(chan error, 2)
		for _, p := range [][]*refreshtoken.TokenSource{p1, p2} {
			go func() { errs <- callAll(srv, p, auds, 6) }()
		}
		for range 2 {
			if err := recv(t, "the callers", errs); err != nil {
				t.Fatalf("lifetime %d: %v", i, err)
			}
		}
		clock.Add(time.Hour)
	}
	if got := srv.AudienceRefreshes(apiA); got != lifetimes {
		t.Errorf("refreshes for the primary's audience = %d, want %d (one per lifetime for the fleet)", got, lifetimes)
	}
	if got := srv.AudienceRefreshes(apiB); got != 2*lifetimes {
		t.Errorf("refreshes for the other audience = %d, want %d (one per lifetime per process)", got, 2*lifetimes)
	}
	if st := srv.Stats(); st.ReuseEvents != 0 || st.ReplacedSent != 0 || st.TokenRequests != st.Refreshes {
		t.Errorf("server stats = %+v, want no reuse", st)
	}
}

// TestAudienceFailure: a transient failure of one audience's refresh
// leaves the others' tokens and refreshes alone, and the refresh token
// intact; a rejection that concerns one audience (access_denied: an API
// the tenant does not know) is that source's alone.
func TestAudienceFailure(t *testing.T) {
	auds := []string{apiA, apiB, apiC}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour, Audiences: []string{apiA, apiB}})
	rt := srv.NewRefreshToken("offline_access")
	srcs := newGroup(t, srv, clock, rt, auds)
	a := tokenFor(t, srv, srcs[0], apiA)
	b := tokenFor(t, srv, srcs[1], apiB)
	if _, err := srcs[2].Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) || errorCodeOf(err) != "access_denied" {
		t.Fatalf("Token() for an audience the server does not know = %v, want ErrRefreshRejected (access_denied)", err)
	}

	// B's refresh fails: B serves its token until it expires, then
	// reports the failure; A and the refresh token are unharmed.
	clock.Add(59 * time.Minute) // A and B in their early window
	srv.Inject(1, refreshtokentest.Fault{Status: http.StatusServiceUnavailable})
	if got := mustToken(t, srcs[1]); got.AccessToken != b.AccessToken {
		t.Fatal("B did not serve its token during its early refresh")
	}
	eventually(t, "B's failed early refresh", func() bool { return srcs[1].Err() != nil })
	var re *refreshtoken.RetryError
	if !errors.As(srcs[1].Err(), &re) {
		t.Fatalf("B's Err() = %v, want a *RetryError", srcs[1].Err())
	}
	if got := mustToken(t, srcs[1]); got.AccessToken != b.AccessToken {
		t.Error("B did not serve its valid token after its refresh failed")
	}
	if got := mustToken(t, srcs[0]); got.AccessToken != a.AccessToken {
		t.Error("A did not serve its valid token")
	}
	refreshtoken.WaitIdle(srcs[0])
	a2 := tokenFor(t, srv, srcs[0], apiA)
	if a2.AccessToken == a.AccessToken || srcs[0].Err() != nil {
		t.Errorf("A's early refresh did not succeed after B's failed: Err() = %v", srcs[0].Err())
	}
	clock.Set(re.RetryAt.Add(time.Second)) // B's back-off ends: its next call refreshes
	mustToken(t, srcs[1])
	refreshtoken.WaitIdle(srcs[1])
	if got := tokenFor(t, srv, srcs[1], apiB); got.AccessToken == b.AccessToken || srcs[1].Err() != nil {
		t.Errorf("B did not recover: Err() = %v", srcs[1].Err())
	}
	if _, err := srcs[2].Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Errorf("C's Token() = %v, want its own rejection still", err)
	}
	if st := srv.Stats(); st.ReuseEvents != 0 || st.ReplacedSent != 0 {
		t.Errorf("server stats = %+v, want no reuse", st)
	}
}

// errorCodeOf is the OAuth error code of err's answer, "" if none.
func errorCodeOf(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// TestAudienceRejection: invalid_grant for one source's refresh rejects
// the refresh token for the whole group at once: every source reports it
// (Err, Health), serves its valid token until it expires and then returns
// ErrRefreshRejected, and none sends the refresh token again. SetToken on
// any source, after a new sign-in, brings the whole group back.
func TestAudienceRejection(t *testing.T) {
	auds := []string{apiA, apiB, apiC}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
	rt := srv.NewRefreshToken("offline_access")
	srcs := newGroup(t, srv, clock, rt, auds)
	for i, ts := range srcs {
		tokenFor(t, srv, ts, auds[i])
	}
	// C's token is refreshed late: it is still valid when A's and B's
	// have expired.
	clock.Add(30 * time.Minute)
	srcs[2].Invalidate()
	c := tokenFor(t, srv, srcs[2], apiC)
	srv.Revoke(rt)
	clock.Add(31 * time.Minute) // A and B expired, C valid
	if _, err := srcs[0].Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("A's Token() after a revocation = %v, want ErrRefreshRejected", err)
	}
	requests := srv.Stats().TokenRequests
	for i, ts := range srcs {
		if h := ts.Health(); !h.Rejected || !errors.Is(ts.Err(), refreshtoken.ErrRefreshRejected) {
			t.Errorf("source for %s: Health() = %+v, Err() = %v, want rejected", auds[i], h, ts.Err())
		}
	}
	if _, err := srcs[1].Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Errorf("B's Token() = %v, want ErrRefreshRejected", err)
	}
	if got := mustToken(t, srcs[2]); got.AccessToken != c.AccessToken {
		t.Error("C did not serve its valid token after the rejection")
	}
	clock.Add(30 * time.Minute)
	if _, err := srcs[2].Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Errorf("C's Token() once its token expired = %v, want ErrRefreshRejected", err)
	}
	if got := srv.Stats().TokenRequests; got != requests {
		t.Errorf("%d requests after the rejection, want none", got-requests)
	}

	// A new sign-in, given to B: every source refreshes from it.
	if err := srcs[1].SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")}); err != nil {
		t.Fatal(err)
	}
	for i, ts := range srcs {
		tokenFor(t, srv, ts, auds[i])
		if ts.Err() != nil {
			t.Errorf("source for %s: Err() = %v after SetToken, want nil", auds[i], ts.Err())
		}
	}
	if st := srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want no reuse", st)
	}
}

// TestAudienceSources: Audience returns one source per audience and scope
// set, the primary for its own, sends its scopes, and each source's
// Transport and Invalidate concern its own token only.
func TestAudienceSources(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
	rt := srv.NewRefreshToken("offline_access read:a read:b write:b")
	srcs := newGroup(t, srv, clock, rt, []string{apiA})
	a := srcs[0]
	b := a.Audience(apiB, "write:b", "read:b")
	t.Cleanup(func() { b.Close() })
	for _, tc := range []struct {
		name string
		got  *refreshtoken.TokenSource
		want *refreshtoken.TokenSource
	}{
		{name: "same scopes in another order", got: a.Audience(apiB, "read:b", "write:b", "read:b"), want: b},
		{name: "asked of a sibling", got: b.Audience(apiB, "read:b", "write:b"), want: b},
		{name: "the primary's own", got: b.Audience(apiA), want: a},
		{name: "the primary's own, by empty audience", got: b.Audience(""), want: a},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: Audience returned another source", tc.name)
		}
	}
	other := a.Audience(apiB, "read:b")
	t.Cleanup(func() { other.Close() })
	if other == b {
		t.Error("Audience returned the same source for another scope set")
	}
	tok := tokenFor(t, srv, b, apiB)
	if got := tok.Extra("scope"); got != "read:b write:b" {
		t.Errorf("scope of B's token = %v, want the scopes asked for", got)
	}

	// A 401 from B's API drops B's token only.
	aTok := tokenFor(t, srv, a, apiA)
	srv.RevokeAccessTokens()
	client := &http.Client{Transport: &refreshtoken.Transport{Source: b}}
	resp, err := client.Get(srv.APIURL + "?audience=" + url.QueryEscape(apiB))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("B's API through B's Transport after a 401 = %d, want 200", resp.StatusCode)
	}
	if got := mustToken(t, a); got.AccessToken != aTok.AccessToken {
		t.Error("B's 401 dropped A's token")
	}
	b.Invalidate()
	if got := mustToken(t, a); got.AccessToken != aTok.AccessToken {
		t.Error("B's Invalidate dropped A's token")
	}
	tokenFor(t, srv, b, apiB)
	if st := srv.Stats(); st.ReuseEvents != 0 || st.ReplacedSent != 0 {
		t.Errorf("server stats = %+v, want no reuse", st)
	}

	// A Cache source has no refresh token to share.
	c := refreshtoken.Cache(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static"}), refreshtoken.WithClock(clock.Now))
	t.Cleanup(func() { c.Close() })
	sib := c.Audience(apiB)
	t.Cleanup(func() { sib.Close() })
	if _, err := sib.Token(); err == nil {
		t.Error("Token() of Audience of a Cache source succeeded, want an error")
	}
}

// TestAudienceSaveFails: a sibling's rotation whose Save failed is
// pending for the whole group: the primary's Flush saves it (with the
// primary's access token), and the sibling, finding nothing pending when
// its Save was to be retried, keeps its token with no refresh.
func TestAudienceSaveFails(t *testing.T) {
	auds := []string{apiA, apiB}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	rt := srv.NewRefreshToken("offline_access")
	srcs := newGroup(t, srv, clock, rt, auds, refreshtoken.WithStore(plainStore{mem}))
	a := tokenFor(t, srv, srcs[0], apiA)
	mem.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	if _, err := srcs[1].Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("B's Token() with saves failing = %v, want ErrNotSaved", err)
	}
	b := tokenFor(t, srv, srcs[1], apiB)
	mem.SetFaults(refreshtokentest.StoreFaults{})
	if err := srcs[0].Flush(); err != nil {
		t.Fatalf("A's Flush() = %v", err)
	}
	newest, _ := srv.Newest(rt)
	if got := mem.Stored(); got.RefreshToken != newest || got.AccessToken != a.AccessToken {
		t.Fatal("Flush did not save B's rotation with A's access token")
	}
	requests := srv.Stats().TokenRequests
	clock.Add(2 * time.Minute) // past the Save's back-off (at most 1 s, doubling)
	if got := tokenFor(t, srv, srcs[1], apiB); got.AccessToken != b.AccessToken {
		t.Error("B did not keep its token")
	}
	refreshtoken.WaitIdle(srcs[1])
	if got := srv.Stats().TokenRequests; got != requests || srcs[1].Err() != nil {
		t.Errorf("B: %d requests, Err() = %v, want none and nil: its Save was done", got-requests, srcs[1].Err())
	}
}

// Audience: one refresh token (Auth0's multi-resource refresh tokens),
// access tokens for two APIs. The sources refresh one at a time, each
// with the refresh token the one before got back.
func ExampleTokenSource_Audience() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	refreshToken := srv.NewRefreshToken("offline_access read:orders read:invoices")

	orders := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: refreshToken},
		refreshtoken.WithEndpointParams(url.Values{"audience": {"https://orders.example.com"}}))
	defer orders.Close()
	invoices := orders.Audience("https://invoices.example.com", "read:invoices")
	defer invoices.Close()

	for _, ts := range []*refreshtoken.TokenSource{orders, invoices, orders} {
		tok, err := ts.Token()
		if err != nil {
			log.Fatal(err)
		}
		aud, _ := srv.AccessAudience(tok.AccessToken)
		fmt.Println(aud)
	}
	st := srv.Stats()
	fmt.Println("refreshes:", st.Refreshes, "reuse:", st.ReuseEvents)
	// Output:
	// https://orders.example.com
	// https://invoices.example.com
	// https://orders.example.com
	// refreshes: 2 reuse: 0
}

// TestAudienceRevoke: Revoke on any source of a group revokes the group's
// refresh token, the one the last rotation brought, and signs out every
// source, which sends nothing more; SetToken on one signs them all in.
func TestAudienceRevoke(t *testing.T) {
	auds := []string{apiA, apiB}
	clock, srv := newServer(t, refreshtokentest.Config{Lifetime: time.Hour})
	srcs := newGroup(t, srv, clock, srv.NewRefreshToken("offline_access"), auds, refreshtoken.WithRevocationURL(srv.RevokeURL))
	for i, ts := range srcs {
		tokenFor(t, srv, ts, auds[i])
	}
	if err := srcs[1].Revoke(context.Background()); err != nil {
		t.Fatalf("Revoke() of B = %v", err)
	}
	if st := srv.Stats(); st.Revocations != 1 || st.ReplacedSent != 0 {
		t.Errorf("server stats = %+v, want 1 revocation of the latest refresh token", st)
	}
	requests := srv.Stats().TokenRequests
	for i, ts := range srcs {
		if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
			t.Errorf("source for %s: Token() after the group's sign-out = %v, want ErrRevoked", auds[i], err)
		}
	}
	clock.Add(2 * time.Hour)
	for i, ts := range srcs {
		if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRevoked) {
			t.Errorf("source for %s: Token() once its token expired = %v, want ErrRevoked", auds[i], err)
		}
	}
	if got := srv.Stats().TokenRequests; got != requests {
		t.Errorf("%d token requests after the sign-out, want none", got-requests)
	}
	if err := srcs[0].SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("offline_access")}); err != nil {
		t.Fatal(err)
	}
	for i, ts := range srcs {
		tokenFor(t, srv, ts, auds[i])
	}
	if st := srv.Stats(); st.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want no reuse", st)
	}
}
