package refreshtoken_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []refreshtoken.Event
}

func (r *recorder) Observe(e refreshtoken.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []refreshtoken.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]refreshtoken.Event(nil), r.events...)
}

// eventsOf returns the events of type T that rec has recorded, in order.
func eventsOf[T refreshtoken.Event](rec *recorder) []T {
	var out []T
	for _, e := range rec.all() {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// only returns the one event of type T for which match holds, failing the
// test if there is not exactly one.
func only[T refreshtoken.Event](t *testing.T, rec *recorder, match func(T) bool) T {
	t.Helper()
	var found []T
	for _, e := range eventsOf[T](rec) {
		if match == nil || match(e) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d events %T, want 1; all events:\n%s", len(found), zero, describeEvents(rec.all()))
	}
	return found[0]
}

func describeEvents(events []refreshtoken.Event) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "\t%T %+v\n", e, e)
	}
	return b.String()
}

func ended(id uint64) func(refreshtoken.RefreshEnded) bool {
	return func(e refreshtoken.RefreshEnded) bool { return e.ID == id }
}

// ignoreTimes ignores the fields measured on the real clock, which the
// tests check apart.
var ignoreTimes = cmp.Options{
	cmpopts.IgnoreFields(refreshtoken.RefreshEnded{}, "Duration", "Request", "LongestWait", "Err"),
	cmpopts.IgnoreFields(refreshtoken.StoreLoaded{}, "Duration", "Err"),
	cmpopts.IgnoreFields(refreshtoken.StoreSaved{}, "Duration", "Err"),
	cmpopts.IgnoreFields(refreshtoken.LockWaited{}, "Waited", "Err"),
	cmpopts.IgnoreFields(refreshtoken.LockReleased{}, "Held"),
	cmpopts.IgnoreFields(refreshtoken.Waited{}, "Context", "Duration", "Err"),
	cmpopts.IgnoreFields(refreshtoken.Unauthorized{}, "Context"),
}

// observed starts a token server on clock and a source, observed by a new
// recorder (after the secret scan), for the refresh token it returns.
func observed(t *testing.T, clock *fakeClock, cfg refreshtokentest.Config, opts ...refreshtoken.Option) (*refreshtokentest.Server, *refreshtoken.TokenSource, *recorder, string) {
	t.Helper()
	cfg.Clock = clock.Now
	srv := refreshtokentest.NewServer(cfg)
	t.Cleanup(srv.Close)
	rec := &recorder{}
	rt := srv.NewRefreshToken("openid offline_access")
	opts = append([]refreshtoken.Option{refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, rec))}, opts...)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: rt}, opts...)
	t.Cleanup(func() { ts.Close() })
	return srv, ts, rec, rt
}

func TestObserveRefreshStarted(t *testing.T) {
	tests := []struct {
		name     string
		provoke  func(clock *fakeClock, ts *refreshtoken.TokenSource, first *oauth2.Token)
		want     refreshtoken.Reason
		timeLeft time.Duration // before the token's real expiry, t0+1h
	}{
		{name: "early", want: refreshtoken.ReasonEarly, timeLeft: 2 * time.Minute,
			provoke: func(clock *fakeClock, _ *refreshtoken.TokenSource, _ *oauth2.Token) {
				clock.Set(t0.Add(58 * time.Minute))
			}},
		{name: "expired", want: refreshtoken.ReasonExpired, timeLeft: 10 * time.Second,
			provoke: func(clock *fakeClock, _ *refreshtoken.TokenSource, _ *oauth2.Token) {
				clock.Set(t0.Add(59*time.Minute + 50*time.Second))
			}},
		{name: "invalidated", want: refreshtoken.ReasonInvalidated,
			provoke: func(_ *fakeClock, ts *refreshtoken.TokenSource, _ *oauth2.Token) { ts.Invalidate() }},
		{name: "unauthorized", want: refreshtoken.ReasonUnauthorized,
			provoke: func(_ *fakeClock, ts *refreshtoken.TokenSource, first *oauth2.Token) { ts.InvalidateToken(first) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			_, ts, rec, rt := observed(t, clock, refreshtokentest.Config{})
			first := mustToken(t, ts)
			tt.provoke(clock, ts, first)
			mustToken(t, ts)
			refreshtoken.WaitIdle(ts) // an early refresh runs in the background

			got := eventsOf[refreshtoken.RefreshStarted](rec)
			firstEnded := only(t, rec, ended(1))
			want := []refreshtoken.RefreshStarted{
				{ID: 1, Reason: refreshtoken.ReasonNoToken, Time: t0, Fingerprint: refreshtoken.Fingerprint(rt)},
				// The refresh token the first refresh brought.
				{ID: 2, Reason: tt.want, Time: clock.Now(), Fingerprint: firstEnded.NewFingerprint, TimeLeft: tt.timeLeft},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("RefreshStarted events (-want +got):\n%s", diff)
			}
			if second := only(t, rec, ended(2)); second.Reason != tt.want || second.Outcome != refreshtoken.OutcomeOK {
				t.Errorf("RefreshEnded = %+v, want reason %s, outcome ok", second, tt.want)
			}
		})
	}
}

// TestObserveRefreshOK checks every field of a successful refresh.
func TestObserveRefreshOK(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts, rec, rt := observed(t, clock, refreshtokentest.Config{})
	mustToken(t, ts)
	newest, _ := srv.Newest(rt)
	got := only[refreshtoken.RefreshEnded](t, rec, nil)
	want := refreshtoken.RefreshEnded{
		ID: 1, Reason: refreshtoken.ReasonNoToken, Outcome: refreshtoken.OutcomeOK, Sent: true, Status: 200,
		Fingerprint: refreshtoken.Fingerprint(rt), Rotated: true, NewFingerprint: refreshtoken.Fingerprint(newest),
		Lifetime: time.Hour, Waiters: 1, // the caller of Token
	}
	if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
		t.Errorf("RefreshEnded (-want +got):\n%s", diff)
	}
	if got.Err != nil {
		t.Errorf("RefreshEnded.Err = %v, want nil", got.Err)
	}
	if got.Request <= 0 || got.Duration < got.Request || got.LongestWait <= 0 {
		t.Errorf("Request = %v, Duration = %v, LongestWait = %v: want 0 < Request <= Duration, LongestWait > 0", got.Request, got.Duration, got.LongestWait)
	}
	if fp := got.NewFingerprint; len(fp) != 8 || fp == got.Fingerprint || strings.Contains(newest, fp) {
		t.Errorf("fingerprints %q -> %q: want 8 hex digits each, different, not part of the token", got.Fingerprint, fp)
	}
}

// TestObserveRefreshFailed checks the outcomes of refreshes that fail.
func TestObserveRefreshFailed(t *testing.T) {
	errDown := errors.New("store is down")
	tests := []struct {
		name      string
		fault     refreshtokentest.Fault
		storeDown bool
		want      refreshtoken.RefreshEnded
	}{
		{name: "503", fault: refreshtokentest.Fault{Status: 503},
			want: refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeTransient, Sent: true, Status: 503, ErrorCode: "server_error"}},
		{name: "429", fault: refreshtokentest.Fault{Status: 429, Header: http.Header{"Retry-After": {"30"}}},
			want: refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeTransient, Sent: true, Status: 429, ErrorCode: "too_many_requests"}},
		{name: "invalid_grant", fault: refreshtokentest.Fault{Status: 403, Error: "invalid_grant"},
			want: refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeRejected, Sent: true, Status: 403, ErrorCode: "invalid_grant"}},
		{name: "store load fails", storeDown: true,
			want: refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeNotSent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
			srv, ts, rec, rt := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
			if tt.storeDown {
				mem.SetFaults(refreshtokentest.StoreFaults{Load: errDown})
			} else {
				srv.Inject(1, tt.fault)
			}
			_, err := ts.Token()
			if err == nil {
				t.Fatal("Token() succeeded, want the refresh's error")
			}
			got := only[refreshtoken.RefreshEnded](t, rec, nil)
			want := tt.want
			want.ID, want.Reason, want.Waiters = 1, refreshtoken.ReasonNoToken, 1
			if want.Sent {
				want.Fingerprint = refreshtoken.Fingerprint(rt)
			}
			if re := (*refreshtoken.RetryError)(nil); errors.As(err, &re) {
				want.RetryAt = re.RetryAt
				if !re.RetryAt.After(t0) {
					t.Errorf("RetryAt = %v, want after t0", re.RetryAt)
				}
			}
			if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
				t.Errorf("RefreshEnded (-want +got):\n%s", diff)
			}
			if got.Err == nil || got.Err.Error() != err.Error() && !errors.Is(err, got.Err) {
				t.Errorf("RefreshEnded.Err = %v, want Token's error %v", got.Err, err)
			}
			if tt.storeDown && !errors.Is(got.Err, errDown) {
				t.Errorf("RefreshEnded.Err = %v, want the store's error", got.Err)
			}
		})
	}
}

// TestObserveRefreshStored: a shared store holds a token another process
// refreshed, which makes the request needless.
func TestObserveRefreshStored(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	srv, other, _, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	theirs := mustToken(t, other)

	rec := &recorder{}
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithStore(mem), refreshtoken.WithObserver(rec))
	defer ts.Close()
	if got := mustToken(t, ts); got.AccessToken != theirs.AccessToken {
		t.Errorf("Token() = %q, want the stored token", got.AccessToken)
	}
	want := refreshtoken.RefreshEnded{ID: 1, Reason: refreshtoken.ReasonNoToken, Outcome: refreshtoken.OutcomeStored, Waiters: 1}
	if diff := cmp.Diff(want, only[refreshtoken.RefreshEnded](t, rec, nil), ignoreTimes); diff != "" {
		t.Errorf("RefreshEnded (-want +got):\n%s", diff)
	}
	if got := srv.Stats().TokenRequests; got != 1 {
		t.Errorf("token requests = %d, want 1 (the other source's)", got)
	}
}

// TestObserveWaiters holds a refresh at the server while callers wait for
// it: the refresh counts them, and each reports the wait with its own
// context and the refresh's ID.
func TestObserveWaiters(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	_, ts, rec, _ := observed(t, clock, refreshtokentest.Config{OnTokenRequest: g.holdWhenArmed})
	mustToken(t, ts)
	g.armed.Store(true)
	clock.Set(t0.Add(59*time.Minute + 50*time.Second)) // expired: callers wait

	type key struct{}
	const callers = 3
	errs := make(chan error, callers)
	for i := range callers {
		ctx := context.WithValue(context.Background(), key{}, i)
		go func() {
			_, err := ts.TokenContext(ctx)
			errs <- err
		}()
	}
	recv(t, "the refresh at the server", g.arrived)
	eventually(t, "callers to wait", func() bool { return refreshtoken.Waiting(ts) == callers })
	close(g.release)
	for range callers {
		if err := recv(t, "a caller", errs); err != nil {
			t.Errorf("Token() error = %v", err)
		}
	}

	end := only(t, rec, ended(2))
	if end.Waiters != callers || end.LongestWait <= 0 {
		t.Errorf("Waiters = %d, LongestWait = %v, want %d and > 0", end.Waiters, end.LongestWait, callers)
	}
	waited := eventsOf[refreshtoken.Waited](rec)[1:] // after the first Token's
	seen := map[any]bool{}
	var longest time.Duration
	for _, w := range waited {
		if w.Refresh != end.ID || w.Err != nil {
			t.Errorf("Waited = %+v, want Refresh %d, no error", w, end.ID)
		}
		seen[w.Context.Value(key{})] = true
		longest = max(longest, w.Duration)
	}
	if len(waited) != callers || len(seen) != callers {
		t.Errorf("%d Waited events for %d contexts, want %d callers' own", len(waited), len(seen), callers)
	}
	if longest < end.LongestWait {
		t.Errorf("longest Waited.Duration %v < RefreshEnded.LongestWait %v", longest, end.LongestWait)
	}
}

// TestObserveWaiterGivesUp: a caller whose context ends before the refresh
// does is told which refresh it gave up on.
func TestObserveWaiterGivesUp(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	_, ts, rec, _ := observed(t, clock, refreshtokentest.Config{OnTokenRequest: g.holdWhenArmed})
	mustToken(t, ts) // refresh 1
	g.armed.Store(true)
	clock.Set(t0.Add(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(ctx)
		errs <- err
	}()
	recv(t, "the refresh at the server", g.arrived)
	eventually(t, "the caller to wait", func() bool { return refreshtoken.Waiting(ts) == 1 })
	cancel()
	if err := recv(t, "the caller", errs); !errors.Is(err, context.Canceled) {
		t.Errorf("TokenContext() error = %v, want context.Canceled", err)
	}
	close(g.release)
	refreshtoken.WaitIdle(ts)

	waited := eventsOf[refreshtoken.Waited](rec)
	if len(waited) != 2 {
		t.Fatalf("%d Waited events, want 2:\n%s", len(waited), describeEvents(rec.all()))
	}
	// Refresh 2, in flight; not refresh 1, which ended before the caller
	// came.
	if w := waited[1]; w.Refresh != 2 || !errors.Is(w.Err, context.Canceled) || w.Context != ctx {
		t.Errorf("Waited = %+v, want Refresh 2, context.Canceled, the caller's context", w)
	}
	if end := only(t, rec, ended(2)); end.Outcome != refreshtoken.OutcomeOK {
		t.Errorf("RefreshEnded = %+v, want ok: the refresh goes on for others", end)
	}
}

func TestObserveStoreLoaded(t *testing.T) {
	errDown := errors.New("store is down")
	tests := []struct {
		name   string
		stored bool
		fault  error
		want   refreshtoken.StoreLoaded
	}{
		{name: "empty", want: refreshtoken.StoreLoaded{Refresh: 1}},
		{name: "found", stored: true, want: refreshtoken.StoreLoaded{Refresh: 1, Found: true}},
		{name: "error", fault: errDown, want: refreshtoken.StoreLoaded{Refresh: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
			srv, ts, rec, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
			if tt.stored {
				mem.Put(&oauth2.Token{AccessToken: "stored-at", RefreshToken: srv.NewRefreshToken(""), Expiry: t0.Add(time.Hour)})
			}
			mem.SetFaults(refreshtokentest.StoreFaults{Load: tt.fault})
			ts.Token()
			got := eventsOf[refreshtoken.StoreLoaded](rec)
			if len(got) == 0 {
				t.Fatalf("no StoreLoaded event:\n%s", describeEvents(rec.all()))
			}
			if diff := cmp.Diff(tt.want, got[0], ignoreTimes); diff != "" {
				t.Errorf("first StoreLoaded (-want +got):\n%s", diff)
			}
			if !errors.Is(got[0].Err, tt.fault) || (tt.fault == nil) != (got[0].Err == nil) {
				t.Errorf("StoreLoaded.Err = %v, want %v", got[0].Err, tt.fault)
			}
		})
	}
}

func TestObserveStoreSaved(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	srv, ts, rec, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	errDown := errors.New("store is down")

	mustToken(t, ts) // refresh 1: saved
	mem.SetFaults(refreshtokentest.StoreFaults{Save: errDown})
	ts.Invalidate()
	// Refresh 2: its Save fails; the token is used, and its callers hear
	// of the failure.
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrNotSaved) {
		t.Fatalf("Token() = %v, want ErrNotSaved", err)
	}
	mem.SetFaults(refreshtokentest.StoreFaults{})
	if err := ts.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatalf("SetToken() = %v", err)
	}

	want := []refreshtoken.StoreSaved{
		{Refresh: 1, Result: refreshtoken.SaveOK},
		{Refresh: 2, Result: refreshtoken.SaveFailed},
		{Result: refreshtoken.SaveOK, Retry: true}, // Flush
		{Result: refreshtoken.SaveOK},              // SetToken
	}
	got := eventsOf[refreshtoken.StoreSaved](rec)
	if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
		t.Fatalf("StoreSaved events (-want +got):\n%s", diff)
	}
	for i, s := range got {
		if (i == 1) != errors.Is(s.Err, errDown) || (i == 1) == (s.Err == nil) {
			t.Errorf("StoreSaved %d: Err = %v", i, s.Err)
		}
	}
	if end := only(t, rec, ended(2)); end.Outcome != refreshtoken.OutcomeOK || !errors.Is(end.Err, refreshtoken.ErrNotSaved) || !end.Rotated {
		t.Errorf("RefreshEnded = %+v, want ok, rotated, with ErrNotSaved", end)
	}
	released := eventsOf[refreshtoken.LockReleased](rec)
	if len(released) != 2 || released[0].Kept || !released[1].Kept || released[1].Refresh != 2 {
		t.Errorf("LockReleased events = %+v, want refresh 1's released, refresh 2's kept", released)
	}
	if set := only[refreshtoken.TokenSet](t, rec, nil); set.Recovered {
		t.Errorf("TokenSet = %+v, want not Recovered: nothing was rejected", set)
	}
}

// TestObserveSaveSuperseded: while a refresh is held at the server,
// another process saves a token; the shared store refuses this one's.
func TestObserveSaveSuperseded(t *testing.T) {
	clock := newFakeClock(t0)
	g := newGate()
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	srv, ts, rec, rt := observed(t, clock, refreshtokentest.Config{OnTokenRequest: g.hold}, refreshtoken.WithStore(mem))
	got := make(chan *oauth2.Token, 1)
	go func() {
		tok, _ := ts.Token()
		got <- tok
	}()
	recv(t, "the refresh at the server", g.arrived)
	theirs := &oauth2.Token{AccessToken: "their-at", RefreshToken: srv.NewRefreshToken(""), Expiry: t0.Add(time.Hour)}
	mem.Put(theirs) // as a process whose lease had not run out would
	close(g.release)
	if tok := recv(t, "Token", got); tok == nil || tok.AccessToken != theirs.AccessToken {
		t.Errorf("Token() = %v, want the stored token", tok)
	}
	want := refreshtoken.StoreSaved{Refresh: 1, Result: refreshtoken.SaveSuperseded}
	if diff := cmp.Diff(want, only[refreshtoken.StoreSaved](t, rec, nil), ignoreTimes); diff != "" {
		t.Errorf("StoreSaved (-want +got):\n%s", diff)
	}
	// The answer rotated the refresh token sent; the token in use is the
	// stored one.
	newest, _ := srv.Newest(rt)
	end := only[refreshtoken.RefreshEnded](t, rec, nil)
	if end.Outcome != refreshtoken.OutcomeOK || !end.Rotated || end.NewFingerprint != refreshtoken.Fingerprint(newest) {
		t.Errorf("RefreshEnded = %+v, want ok, rotated to the answer's refresh token %s", end, refreshtoken.Fingerprint(newest))
	}
	if loads := eventsOf[refreshtoken.StoreLoaded](rec); len(loads) != 3 || !loads[2].Found {
		t.Errorf("StoreLoaded events = %+v, want 3: before and under the lock, and the stored token after the refusal", loads)
	}
}

func TestObserveLock(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	_, ts, rec, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	_, unlock, err := mem.Lock(context.Background()) // another process's
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		errs <- err
	}()
	eventually(t, "the source to wait for the lock", func() bool { return mem.Stats().Waits == 1 })
	unlock(context.Background())
	if err := recv(t, "Token", errs); err != nil {
		t.Fatalf("Token() = %v", err)
	}
	waited := only[refreshtoken.LockWaited](t, rec, nil)
	if waited.Refresh != 1 || waited.Err != nil || waited.Waited <= 0 {
		t.Errorf("LockWaited = %+v, want refresh 1, a wait, no error", waited)
	}
	released := only[refreshtoken.LockReleased](t, rec, nil)
	if released.Refresh != 1 || released.Kept || released.Held <= 0 {
		t.Errorf("LockReleased = %+v, want refresh 1 released", released)
	}
}

// TestObserveLockWaitStopped: Close stops the wait for the lock; nothing
// is sent.
func TestObserveLockWaitStopped(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	_, ts, rec, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	_, unlock, err := mem.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(context.Background())
	errs := make(chan error, 1)
	go func() {
		_, err := ts.Token()
		errs <- err
	}()
	eventually(t, "the source to wait for the lock", func() bool { return mem.Stats().Waits == 1 })
	ts.Close()
	if err := recv(t, "Token", errs); err == nil {
		t.Fatal("Token() succeeded, want an error")
	}
	if w := only[refreshtoken.LockWaited](t, rec, nil); w.Err == nil {
		t.Errorf("LockWaited = %+v, want an error", w)
	}
	if n := len(eventsOf[refreshtoken.LockReleased](rec)); n != 0 {
		t.Errorf("%d LockReleased events, want none: the lock was never taken", n)
	}
	if end := only[refreshtoken.RefreshEnded](t, rec, nil); end.Outcome != refreshtoken.OutcomeNotSent || end.Sent {
		t.Errorf("RefreshEnded = %+v, want not_sent", end)
	}
}

// TestObserveOrder: a refresh's events come in the order of its steps,
// and the caller's Waited after them.
func TestObserveOrder(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	_, ts, rec, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	mustToken(t, ts)
	var got []string
	for _, e := range rec.all() {
		got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", e), "refreshtoken."))
	}
	want := []string{"RefreshStarted", "StoreLoaded", "LockWaited", "StoreLoaded", "StoreSaved", "LockReleased", "RefreshEnded", "Waited"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, e := range rec.all() {
		var id uint64
		switch e := e.(type) {
		case refreshtoken.RefreshStarted:
			id = e.ID
		case refreshtoken.RefreshEnded:
			id = e.ID
		case refreshtoken.StoreLoaded:
			id = e.Refresh
		case refreshtoken.LockWaited:
			id = e.Refresh
		case refreshtoken.StoreSaved:
			id = e.Refresh
		case refreshtoken.LockReleased:
			id = e.Refresh
		case refreshtoken.Waited:
			id = e.Refresh
		}
		if id != 1 {
			t.Errorf("%T %+v: refresh %d, want 1", e, e, id)
		}
	}
}

// TestObserveUnauthorized uses an API that rejects every token.
func TestObserveUnauthorized(t *testing.T) {
	clock := newFakeClock(t0)
	_, ts, rec, _ := observed(t, clock, refreshtokentest.Config{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "wrong audience", http.StatusUnauthorized)
	}))
	defer api.Close()
	client := refreshtoken.NewClient(context.Background(), ts)
	type key struct{}
	for i := range 2 {
		req, _ := http.NewRequestWithContext(context.WithValue(context.Background(), key{}, i), "GET", api.URL, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	want := []refreshtoken.Unauthorized{
		{Dropped: true, Retried: true, RejectedAgain: true},
		// The replacement was rejected too: a back-off, no retry.
		{Dropped: true},
	}
	got := eventsOf[refreshtoken.Unauthorized](rec)
	if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
		t.Fatalf("Unauthorized events (-want +got):\n%s", diff)
	}
	for i, u := range got {
		if u.Context.Value(key{}) != i {
			t.Errorf("Unauthorized %d: not the request's context", i)
		}
	}
	if s := only(t, rec, func(e refreshtoken.RefreshStarted) bool { return e.ID == 2 }); s.Reason != refreshtoken.ReasonUnauthorized {
		t.Errorf("RefreshStarted = %+v, want reason unauthorized", s)
	}
}

func TestObserveTokenSetRecovers(t *testing.T) {
	clock := newFakeClock(t0)
	srv, ts, rec, _ := observed(t, clock, refreshtokentest.Config{})
	srv.Inject(1, refreshtokentest.Fault{Status: 403, Error: "invalid_grant"})
	if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("Token() = %v, want ErrRefreshRejected", err)
	}
	rt := srv.NewRefreshToken("")
	ts.SetToken(&oauth2.Token{RefreshToken: rt})
	mustToken(t, ts)
	ts.SetToken(&oauth2.Token{AccessToken: "at", Expiry: t0.Add(time.Hour)})
	want := []refreshtoken.TokenSet{
		{Fingerprint: refreshtoken.Fingerprint(rt), Recovered: true},
		{},
	}
	if diff := cmp.Diff(want, eventsOf[refreshtoken.TokenSet](rec)); diff != "" {
		t.Errorf("TokenSet events (-want +got):\n%s", diff)
	}
}

// TestObserverPanics: an observer that panics at every event breaks
// nothing: refreshes, saves, the lock, the Transport's retry, SetToken.
func TestObserverPanics(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	var events int
	var mu sync.Mutex
	panics := refreshtoken.ObserverFunc(func(refreshtoken.Event) {
		mu.Lock()
		events++
		mu.Unlock()
		panic("observer")
	})
	srv, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem), refreshtoken.WithObserver(panics))
	first := mustToken(t, ts)
	clock.Set(t0.Add(58 * time.Minute))
	mustToken(t, ts)
	refreshtoken.WaitIdle(ts)
	if got := mustToken(t, ts); got.AccessToken == first.AccessToken {
		t.Error("the early refresh did not land")
	}
	resp, err := refreshtoken.NewClient(context.Background(), ts).Get(srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("API answered %d, want 200", resp.StatusCode)
	}
	if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Errorf("SetToken() = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if events < 10 {
		t.Errorf("observer called %d times, want every event", events)
	}
}

// TestNilObserver: WithObserver(nil) is no observer; a nil ObserverFunc
// panics at every call, which is recovered.
func TestNilObserver(t *testing.T) {
	for _, obs := range []refreshtoken.Observer{nil, refreshtoken.ObserverFunc(nil)} {
		clock := newFakeClock(t0)
		_, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithObserver(obs))
		first := mustToken(t, ts)
		ts.Invalidate()
		if got := mustToken(t, ts); got.AccessToken == first.AccessToken {
			t.Errorf("%T: Token() after Invalidate = the dropped token", obs)
		}
	}
}

// TestObserveSetTokenStore: SetToken on a source that has not read its
// shared store yet reads it, then saves the token.
func TestObserveSetTokenStore(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	srv, ts, rec, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	rt := srv.NewRefreshToken("")
	if err := ts.SetToken(&oauth2.Token{RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
	want := []refreshtoken.Event{
		refreshtoken.TokenSet{Fingerprint: refreshtoken.Fingerprint(rt)},
		refreshtoken.StoreLoaded{},
		refreshtoken.StoreSaved{Result: refreshtoken.SaveOK},
	}
	if diff := cmp.Diff(want, rec.all(), ignoreTimes); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestSlowObserver: an observer that blocks holds up only the goroutine
// that called it. While the background refresh's observer call is stuck,
// callers of the stale token are handed it at once; once it returns, the
// refresh completes.
func TestSlowObserver(t *testing.T) {
	clock := newFakeClock(t0)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var armed atomic.Bool
	obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
		if _, ok := e.(refreshtoken.RefreshStarted); ok && armed.Load() {
			entered <- struct{}{}
			<-release
		}
	})
	srv, ts := setup(t, clock, refreshtokentest.Config{}, refreshtoken.WithObserver(obs))
	tok := mustToken(t, ts)
	armed.Store(true)
	expiry, _ := srv.AccessExpiry(tok.AccessToken)
	clock.Set(expiry.Add(-time.Minute)) // stale: the next Token starts a refresh
	mustToken(t, ts)
	recv(t, "the observer's call", entered)
	done := make(chan error, 1)
	go func() {
		for range 100 {
			got, err := ts.Token()
			if err == nil && got.AccessToken != tok.AccessToken {
				err = errors.New("a token other than the stale one")
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if err := recv(t, "100 calls of Token while the observer is stuck", done); err != nil {
		t.Fatalf("Token() = %v, want the stale token at once", err)
	}
	close(release)
	refreshtoken.WaitIdle(ts)
	if got := mustToken(t, ts); got.AccessToken == tok.AccessToken {
		t.Error("the refresh did not complete once the observer returned")
	}
}

// TestObserverReadsSource: an observer may call Health and Err, which take
// no lock, from any event, and Token from RefreshEnded once the refresh has
// a fresh token: the token is published before RefreshEnded, so Token
// takes the fast path and does not wait for the refresh that calls it.
func TestObserverReadsSource(t *testing.T) {
	clock := newFakeClock(t0)
	var src atomic.Pointer[refreshtoken.TokenSource]
	type seen struct {
		started, ended refreshtoken.Health
		token          string
	}
	got := make(chan seen, 10)
	var cur seen
	obs := refreshtoken.ObserverFunc(func(e refreshtoken.Event) {
		ts := src.Load()
		_ = ts.Err()
		switch e := e.(type) {
		case refreshtoken.RefreshStarted:
			cur = seen{started: ts.Health()}
		case refreshtoken.RefreshEnded:
			cur.ended = ts.Health()
			if e.Outcome == refreshtoken.OutcomeOK {
				tok, err := ts.Token()
				if err != nil {
					t.Errorf("Token() in RefreshEnded: %v", err)
				} else {
					cur.token = tok.AccessToken
				}
			}
			got <- cur
		default:
			ts.Health()
		}
	})
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Clock: clock.Now})
	t.Cleanup(srv.Close)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("openid offline_access")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithObserver(obs))
	t.Cleanup(func() { ts.Close() })
	src.Store(ts)
	for round := range 2 {
		done := make(chan *oauth2.Token, 1)
		go func() {
			tok, err := ts.Token()
			if err != nil {
				t.Errorf("Token() = %v", err)
			}
			done <- tok
		}()
		tok := recv(t, "Token, with an observer that reads the source", done)
		s := recv(t, "RefreshEnded", got)
		if s.started.Ready || !s.ended.Ready || s.ended.ValidFor <= 0 {
			t.Errorf("round %d: Health at start %+v, at end %+v: want not Ready, then Ready", round, s.started, s.ended)
		}
		if tok == nil || s.token != tok.AccessToken {
			t.Errorf("round %d: the observer's Token is not the new token", round)
		}
		ts.Invalidate()
	}
}

// TestObserveFailedAfterStoredToken: a refresh that took a stale token
// from the store (another process's, about to turn due) and then failed
// at the endpoint is transient, not ok: the stored token is no new token,
// and the next attempt is reported.
func TestObserveFailedAfterStoredToken(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	srv, other, _, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem))
	stored := mustToken(t, other)
	other.Close()
	clock.Set(t0.Add(59*time.Minute + 30*time.Second)) // the stored token is stale

	rec := &recorder{}
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithClock(clock.Now), refreshtoken.WithJitter(0), refreshtoken.WithStore(mem),
		refreshtoken.WithObserver(scanSecrets(t, srv.Secrets, rec)))
	defer ts.Close()
	srv.Inject(1, refreshtokentest.Fault{Status: 503})
	if got := mustToken(t, ts); got.AccessToken != stored.AccessToken {
		t.Fatal("Token() is not the stored token")
	}
	got := only[refreshtoken.RefreshEnded](t, rec, nil)
	if got.Outcome != refreshtoken.OutcomeTransient || !got.Sent || got.Status != 503 || got.RetryAt.IsZero() || got.Err == nil {
		t.Errorf("RefreshEnded = %+v, want outcome transient, sent, status 503, RetryAt and Err set", got)
	}
}
