package refreshtoken_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// More ways the first promise can break, found by review of the rebuilt
// cache: around failed Saves, the callback, Close and Cache.

// plainStore hides the lock of a MemoryStore: a Store that is not shared.
type plainStore struct{ refreshtoken.Store }

// TestCallbackPanicAfterFailedSave: a callback that panics after the Save
// of a rotated token failed does not skip what the refresh records: the
// Save stays pending (Flush saves it), and a shared store's lock stays held
// while the store has the retired refresh token.
func TestCallbackPanicAfterFailedSave(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "Store"
		if shared {
			name = "SharedStore"
		}
		t.Run(name, func(t *testing.T) {
			clock, srv := newServer(t, refreshtokentest.Config{})
			rt1 := srv.NewRefreshToken("")
			ms := sharedStore(0)
			ms.Put(&oauth2.Token{RefreshToken: rt1})
			ms.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
			var st refreshtoken.Store = plainStore{ms}
			if shared {
				st = ms
			}
			ts := replica(t, srv, clock, st, rt1,
				refreshtoken.WithOnNewToken(func(context.Context, *oauth2.Token) error { panic("callback bug") }))
			if _, err := ts.Token(); err == nil {
				t.Fatal("Token() succeeded with a failing Save and a panicking callback")
			}
			if shared && !ms.Locked() {
				t.Error("shared lock released while the store holds the retired refresh token")
			}
			ms.SetFaults(refreshtokentest.StoreFaults{})
			if err := ts.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := ms.Stored(); got == nil || got.RefreshToken == rt1 {
				t.Fatal("after Flush the store still holds the retired refresh token")
			}
			restarted := replica(t, srv, clock, st, rt1)
			clock.Add(2 * time.Hour)
			mustToken(t, restarted)
			if got := srv.Stats(); got.ReplacedSent != 0 || got.ReuseEvents != 0 {
				t.Errorf("server stats = %+v: a restart sent the retired refresh token", got)
			}
		})
	}
}

// TestRotationSavedAfterPendingSave: an older token whose Save is pending
// never overwrites a refresh token rotated and saved after it (an answer
// that rotated the refresh token but was otherwise unusable).
func TestRotationSavedAfterPendingSave(t *testing.T) {
	clock := newFakeClock(t0)
	ms := sharedStore(0)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if k == 1 {
			io.WriteString(w, `{"access_token":"at1","refresh_token":"rt2","expires_in":3600}`)
			return
		}
		ms.SetFaults(refreshtokentest.StoreFaults{}) // the store is back for the rotated token
		io.WriteString(w, `{"refresh_token":"rt3","expires_in":"soon"}`)
	}))
	defer srv.Close()
	ms.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	conf := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: "rt1"},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithStore(plainStore{ms}))
	defer ts.Close()
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() = %v, want ErrNotSaved", err)
	}
	clock.Set(t0.Add(58 * time.Minute)) // the retried Save fails, the refresh rotates
	mustToken(t, ts)
	waitRefresh(t, ts)
	if got := ms.Stored(); got == nil || got.RefreshToken != "rt3" {
		t.Fatalf("stored refresh token = %v, want rt3", got)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ms.Stored(); got.RefreshToken != "rt3" {
		t.Errorf("after Close the store holds %q, retired; want rt3", got.RefreshToken)
	}
}

// TestWaiterInMarginGetsCachedToken: a caller that comes within the safety
// margin, and so waits for the refresh, gets the cached token, still valid,
// when that refresh fails, transiently or for good.
func TestWaiterInMarginGetsCachedToken(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault refreshtokentest.Fault
	}{
		{"transient 503", refreshtokentest.Fault{Status: http.StatusServiceUnavailable}},
		{"invalid_grant", refreshtokentest.Fault{Status: http.StatusBadRequest, Error: "invalid_grant"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			srv, ts := setup(t, clock, refreshtokentest.Config{})
			first := mustToken(t, ts)
			clock.Set(t0.Add(59*time.Minute + 55*time.Second))
			srv.Inject(1, tt.fault)
			tok, err := ts.Token()
			if err != nil || tok.AccessToken != first.AccessToken {
				t.Errorf("Token() in the margin after a failed refresh = %v, want the cached token, valid for 5 s", err)
			}
			if ts.Err() == nil {
				t.Error("Err() = nil, want the refresh's failure")
			}
		})
	}
}

// flakySource is an inner source that fails while told to, and otherwise
// hands back its one token, as a caching source does.
type flakySource struct {
	mu    sync.Mutex
	tok   *oauth2.Token
	fail  bool
	calls int
}

func (s *flakySource) Token() (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail {
		return nil, errors.New("inner: 503")
	}
	return s.tok, nil
}

func (s *flakySource) set(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

func (s *flakySource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// TestCacheHandedBackAfterFailure: a caching inner source that answers
// again after a failure, with the token it had, clears the failure and is
// asked again only after a back-off, not on every call.
func TestCacheHandedBackAfterFailure(t *testing.T) {
	clock := newFakeClock(t0)
	src := &flakySource{tok: &oauth2.Token{AccessToken: "inner-1", Expiry: t0.Add(time.Hour)}}
	ts := refreshtoken.Cache(src, refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0))
	defer ts.Close()
	mustToken(t, ts)
	clock.Set(t0.Add(58 * time.Minute))
	src.set(true)
	mustToken(t, ts)
	waitRefresh(t, ts)
	src.set(false)
	clock.Add(2 * time.Second)
	mustToken(t, ts) // handed back
	waitRefresh(t, ts)
	before := src.count()
	for range 10 {
		mustToken(t, ts)
		waitRefresh(t, ts)
	}
	if got := src.count() - before; got != 0 {
		t.Errorf("inner source called %d times in 10 calls at one instant, want 0 (back-off)", got)
	}
	if err := ts.Err(); err != nil {
		t.Errorf("Err() = %v after the inner source answered, want nil", err)
	}
}

// TestFlushKeepsServerWait: Flush, saving a pending token, clears only the
// failed Save, not the server's Retry-After of a later failed refresh.
func TestFlushKeepsServerWait(t *testing.T) {
	clock := newFakeClock(t0)
	ms := sharedStore(0)
	ms.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	srv, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(plainStore{ms}))
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() = %v, want ErrNotSaved", err)
	}
	clock.Set(t0.Add(58 * time.Minute))
	srv.Inject(1, refreshtokentest.Fault{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"600"}}})
	mustToken(t, ts)
	waitRefresh(t, ts)
	if !errors.As(ts.Err(), new(*refreshtoken.RetryError)) {
		t.Fatalf("Err() = %v, want the 429's RetryError", ts.Err())
	}
	before := srv.Stats().TokenRequests
	ms.SetFaults(refreshtokentest.StoreFaults{})
	if err := ts.Flush(); err != nil {
		t.Fatal(err)
	}
	mustToken(t, ts)
	waitRefresh(t, ts)
	if got := srv.Stats().TokenRequests - before; got != 0 {
		t.Errorf("%d requests within the server's Retry-After of 600 s, after Flush", got)
	}
}

// slowLoad is a MemoryStore whose Load returns only once its context has
// ended, as a store that answers just as Close cancels it.
type slowLoad struct {
	*refreshtokentest.MemoryStore
	loading chan struct{}
}

func (s slowLoad) Load(ctx context.Context) (*oauth2.Token, error) {
	s.loading <- struct{}{}
	<-ctx.Done()
	return s.MemoryStore.Load(context.Background())
}

// TestNoRequestAfterClose: Close stops a refresh that has not sent its
// request, even one whose store answers after Close.
func TestNoRequestAfterClose(t *testing.T) {
	clock := newFakeClock(t0)
	st := slowLoad{MemoryStore: sharedStore(0), loading: make(chan struct{}, 1)}
	srv, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(plainStore{st}))
	done := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		done <- err
	}()
	recv(t, "the Load", st.loading)
	ts.Close()
	if err := recv(t, "the caller", done); err == nil {
		t.Error("Token() succeeded after Close")
	}
	if got := srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0: Close came before the request", got)
	}
}

// TestSupersededRefreshStartsAgain: a refresh whose token the shared store
// refused (another process saved first), and that found only a refresh
// token there, leaves an entry whose early refresh starts again.
func TestSupersededRefreshStartsAgain(t *testing.T) {
	clock := newFakeClock(t0)
	ms := sharedStore(0)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now, ReuseInterval: time.Hour,
		OnTokenRequest: func(*http.Request) {
			if ms.Stats().Stored == 0 { // another process saves first, once
				ms.Put(&oauth2.Token{RefreshToken: "rt-of-another-process"})
			}
		}})
	defer srv.Close()
	rt := srv.NewRefreshToken("")
	ts := refreshtoken.New(context.Background(), srv.Config(),
		&oauth2.Token{AccessToken: "caller-at", RefreshToken: rt, Expiry: t0.Add(time.Hour)},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(ms))
	defer ts.Close()
	clock.Set(t0.Add(58 * time.Minute))
	mustToken(t, ts)
	waitRefresh(t, ts)
	before := srv.Stats().TokenRequests
	for range 5 {
		clock.Add(10 * time.Second)
		mustToken(t, ts)
		waitRefresh(t, ts)
	}
	if got := srv.Stats().TokenRequests - before; got == 0 {
		t.Error("no background refresh in 50 s of a stale token after a superseded refresh")
	}
}

// deadlineStore is a MemoryStore that records the deadlines of its
// SaveIfCurrent calls and of the unlocks of its lock.
type deadlineStore struct {
	*refreshtokentest.MemoryStore
	saves, unlocks chan time.Time
}

func (d deadlineStore) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	dl, _ := ctx.Deadline()
	d.saves <- dl
	return d.MemoryStore.SaveIfCurrent(ctx, tok, previous)
}

func (d deadlineStore) Lock(ctx context.Context) (time.Time, func(context.Context) error, error) {
	expires, unlock, err := d.MemoryStore.Lock(ctx)
	if err != nil {
		return expires, nil, err
	}
	return expires, func(ctx context.Context) error {
		dl, _ := ctx.Deadline()
		d.unlocks <- dl
		return unlock(ctx)
	}, nil
}

// TestSharedUnlockWithinWrapUp: the release of a shared store's lock after
// a refresh shares the timeout of the Save and the callback, so that Close
// stays within three refresh timeouts with a shared store too.
func TestSharedUnlockWithinWrapUp(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	st := deadlineStore{MemoryStore: sharedStore(0), saves: make(chan time.Time, 1), unlocks: make(chan time.Time, 1)}
	ts := replica(t, srv, clock, st, srv.NewRefreshToken(""))
	mustToken(t, ts)
	saved, unlocked := recv(t, "the Save", st.saves), recv(t, "the unlock", st.unlocks)
	if !saved.Equal(unlocked) {
		t.Errorf("unlock deadline %v, Save deadline %v: want one shared timeout", unlocked, saved)
	}
}

// TestSetTokenNilKeepsPendingSave (found by the model): SetToken(nil) does
// not drop the pending Save of a rotated token; otherwise the store keeps
// the refresh token the server retired, and a load or a restart sends it.
func TestSetTokenNilKeepsPendingSave(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	rt := srv.NewRefreshToken("")
	ms := sharedStore(0)
	ts := replica(t, srv, clock, ms, rt)
	mustToken(t, ts)
	ms.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	clock.Add(time.Hour)
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() = %v, want ErrNotSaved", err)
	}
	if err := ts.SetToken(nil); err != nil {
		t.Fatal(err)
	}
	ms.SetFaults(refreshtokentest.StoreFaults{})
	if err := ts.Close(); err != nil {
		t.Fatalf("Close() = %v: the pending Save was dropped or failed", err)
	}
	restarted := replica(t, srv, clock, ms, rt)
	clock.Add(time.Hour)
	mustToken(t, restarted)
	if got := srv.Stats(); got.ReplacedSent != 0 || got.ReuseEvents != 0 {
		t.Errorf("server stats = %+v: the retired refresh token was sent", got)
	}
}

// TestSetTokenRetryAfterUnseenSave (found by the model): a SetToken whose
// Save fails is retried over the family it replaced, even when an earlier
// Save of that family landed though it reported a failure: the new login is
// not lost to the old family's token.
func TestSetTokenRetryAfterUnseenSave(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	ms := sharedStore(0)
	ts := replica(t, srv, clock, ms, srv.NewRefreshToken(""))
	mustToken(t, ts)
	ms.SetFaults(refreshtokentest.StoreFaults{Save: errBroken, SaveLands: true})
	clock.Add(time.Hour)
	ts.Token() // the Save lands, and reports a failure
	ms.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
	login := srv.NewRefreshToken("")
	if err := ts.SetToken(&oauth2.Token{RefreshToken: login}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken() = %v, want ErrNotSaved", err)
	}
	ms.SetFaults(refreshtokentest.StoreFaults{})
	mustToken(t, ts)
	if got, _ := srv.Newest(login); ms.Stored().RefreshToken != got {
		t.Errorf("the store holds %q, want the newest of the new login's family", ms.Stored().RefreshToken)
	}
}

// TestCloseStopsLockWait: Close stops a refresh that waits for a shared
// store's lock, which another process holds: nothing was sent, and Close
// need not wait for the lease.
func TestCloseStopsLockWait(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	ms := sharedStore(time.Hour)
	_, unlock, err := ms.Lock(context.Background()) // another process's
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(context.Background())
	ts := replica(t, srv, clock, ms, srv.NewRefreshToken(""))
	done := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		done <- err
	}()
	eventually(t, "the source to wait for the lock", func() bool { return ms.Stats().Waits > 0 })
	ts.Close()
	if err := recv(t, "the caller", done); !errors.Is(err, context.Canceled) {
		t.Errorf("Token() = %v, want an error wrapping context.Canceled", err)
	}
	if got := srv.Stats().TokenRequests; got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// TestSetTokenRetryKeepsFleetRotation: a SetToken on a source that never
// read its shared store, whose Save landed but reported a failure, is not
// forced over the token another process then refreshed from it.
func TestSetTokenRetryKeepsFleetRotation(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	st := sharedStore(0)
	a := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(st))
	defer a.Close()
	b := replica(t, srv, clock, st, "rt-unused")
	signedIn := srv.NewRefreshToken("")
	st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken, SaveLands: true})
	if err := a.SetToken(&oauth2.Token{RefreshToken: signedIn}); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("SetToken() = %v, want ErrNotSaved", err)
	}
	st.SetFaults(refreshtokentest.StoreFaults{})
	mustToken(t, b) // b loads signedIn and rotates it
	if err := a.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	if got := st.Stored(); got == nil || got.RefreshToken == signedIn {
		t.Error("the retried SetToken overwrote the token b rotated")
	}
	clock.Add(time.Hour)
	a.Token()
	if got := srv.Stats(); got.ReuseEvents != 0 || got.ReplacedSent != 0 {
		t.Errorf("server stats = %+v: a retired refresh token was sent", got)
	}
}

// TestRotationOnlyFailuresReachCallers: an answer that rotates the refresh
// token but has no access token, whose Save or callback fails: the callers
// waiting for that refresh hear of the failure, as ErrNotSaved and
// WithOnNewToken promise, though a valid token is still cached.
func TestRotationOnlyFailuresReachCallers(t *testing.T) {
	for _, withStore := range []bool{true, false} {
		clock := newFakeClock(t0)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"refresh_token":"rt-2","token_type":"Bearer"}`)
		}))
		defer srv.Close()
		conf := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
		opts := []refreshtoken.Option{refreshtoken.WithClock(clock.Now)}
		if withStore {
			st := refreshtokentest.NewMemoryStore(clock.Now, 0)
			st.Put(&oauth2.Token{RefreshToken: "rt-1"})
			st.SetFaults(refreshtokentest.StoreFaults{Save: errBroken})
			opts = append(opts, refreshtoken.WithStore(st))
		} else {
			opts = append(opts, refreshtoken.WithOnNewToken(func(context.Context, *oauth2.Token) error { return errBroken }))
		}
		ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: t0.Add(time.Hour)}, opts...)
		defer ts.Close()
		clock.Add(time.Hour - 5*time.Second) // in the safety margin: the caller waits
		if _, err := ts.Token(); !errors.Is(err, errBroken) {
			t.Errorf("store %v: the waiting caller got %v, want the Save's or the callback's failure", withStore, err)
		}
	}
}

// panickingStore is a plain MemoryStore whose Save panics while told to.
type panickingStore struct {
	*refreshtokentest.MemoryStore
	panics bool
}

func (p *panickingStore) Load(ctx context.Context) (*oauth2.Token, error) {
	return p.MemoryStore.Load(ctx)
}

func (p *panickingStore) Save(ctx context.Context, tok *oauth2.Token) error {
	if p.panics {
		panic("store bug")
	}
	return p.MemoryStore.Save(ctx, tok)
}

// TestStorePanicKeepsRotation: a Store whose Save panics after a rotation
// leaves the Save pending, like one that fails: Close saves the rotated
// refresh token, and a restart does not send the retired one.
func TestStorePanicKeepsRotation(t *testing.T) {
	clock, srv := newServer(t, refreshtokentest.Config{})
	rt := srv.NewRefreshToken("")
	st := &panickingStore{MemoryStore: sharedStore(0), panics: true}
	ts := replica(t, srv, clock, plainStore{st}, rt)
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Errorf("Token() = %v, want ErrNotSaved", err)
	}
	st.panics = false
	if err := ts.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if newest, _ := srv.Newest(rt); st.Stored() == nil || st.Stored().RefreshToken != newest {
		t.Fatal("the store does not hold the rotated refresh token")
	}
	restarted := replica(t, srv, clock, plainStore{st}, rt)
	clock.Add(time.Hour)
	mustToken(t, restarted)
	if got := srv.Stats(); got.ReplacedSent != 0 {
		t.Errorf("server stats = %+v: the retired refresh token was sent", got)
	}
}
