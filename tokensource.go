package refreshtoken

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// ErrClosed is returned by Token and TokenContext after Close, and by a
// [Pool]'s calls after its Close.
var ErrClosed = errors.New("refreshtoken: token source closed")

// ErrNoToken is wrapped by the error of a refresh that has no refresh token
// to send: none was given to [New] or [TokenSource.SetToken], and the
// [Store] holds none (a [Pool] key whose user has not signed in). The
// store is read again after the back-off of a [*RetryError]; SetToken
// ends the back-off.
var ErrNoToken = errors.New("refreshtoken: no refresh token: none was given and the store holds none (the user must sign in, then SetToken)")

// TokenSource is an [oauth2.TokenSource] that caches an access token and
// refreshes it shortly before it expires: in the background while the old
// token is still handed out, and with one request however many goroutines
// ask. Make one with [New] (the refresh grant) or [Cache] (any other source).
//
// A TokenSource is safe for concurrent use by multiple goroutines, and is
// meant to be shared: one per refresh token. An idle TokenSource runs no
// goroutine and no timer. The zero value is not usable. The tokens it
// returns are the caller's own copies.
type TokenSource struct {
	// A field added here is copied, or left zero, for the sources of
	// Audience in sibling (audience.go).

	// cur is what Token hands out. Token reads it without a lock. It is
	// replaced whole: by a refresh's publish, SetToken and Flush (mu
	// held), by the drops of Invalidate, InvalidateToken and Transport,
	// which compare-and-swap without a lock, and emptied by Close.
	cur atomic.Pointer[entry]

	// own owns the refresh token: its lock serialises the refreshes,
	// SetToken and Flush of this source and of the sources of Audience
	// that share it, and guards rejected, policy and the store's state.
	// It is &owned for a source made by New or Cache.
	own   *owner
	owned owner
	// rejected is a refresh token the endpoint rejected for good; this
	// source never sends it again, whoever brings it back (a store,
	// SetToken).
	rejected string
	policy   policy
	store    *storeSync // nil without WithStore; the group's, own.mu guards it

	// config is what the source shares with the other sources made by
	// the same Pool (New and Cache make one per source): set once, never
	// modified. Sharing it keeps an idle source small.
	*config
	// group runs the refresh in flight under flightKey, which the callers
	// that need it join: the source's own group, or the one its Pool's
	// sources share, under their keys (an idle source then keeps no map
	// of its own).
	group     *singleflight.Group
	flightKey string

	// stopping cancels the steps of the refresh in flight that come
	// before its request (reading the store, waiting for its lock): Close
	// calls it. Nil when no refresh runs.
	stopping atomic.Pointer[context.CancelFunc]
	closed   atomic.Bool

	// refreshes counts the refreshes that started, for the events' IDs;
	// mu guards it. latest is the ID of the refresh in flight, or of the
	// last one: the one a waiting caller waits for.
	refreshes uint64
	latest    atomic.Uint64
	waiting   *waiting // only with an observer; nil otherwise
}

// config is the part of a source that New, Cache or a Pool set once.
type config struct {
	grant *grant             // the refresh grant, for New and Pool
	src   oauth2.TokenSource // the inner source, for Cache
	onNew func(ctx context.Context, tok *oauth2.Token) error

	window window
	// clock is the clock set with WithClock, nil for the default, which
	// fresh can read more cheaply than through a func.
	clock   func() time.Time
	timeout time.Duration
	// ctx carries the values of New's context and no cancellation: no
	// caller and not Close may cut off a request the server may already
	// have acted on.
	ctx context.Context
	// obs is the observer; nil without WithObserver, which costs one
	// comparison where an event would be.
	obs Observer
	// limiter is the request budget the source shares; nil without
	// WithLimiter.
	limiter *Limiter
	// keepAlives runs the keep-alive refreshes (KeepAlive) of the sources
	// that share the config, each under its flightKey: a group apart from
	// their refreshes', whose keys a Pool's user keys are, so that no key
	// can name another's keep-alive.
	keepAlives *singleflight.Group
}

// newConfig returns the config of o, with the values of ctx.
func newConfig(ctx context.Context, o options) *config {
	return &config{onNew: o.onNew, window: o.window, clock: o.clock, timeout: o.timeout, ctx: context.WithoutCancel(ctx), obs: o.obs, limiter: o.limiter, keepAlives: new(singleflight.Group)}
}

// waiting counts the callers waiting for a refresh, for RefreshEnded.
type waiting struct {
	mu    sync.Mutex
	n     int
	since time.Time // when the first of the n began to wait
}

// begin counts a caller that begins to wait, and returns when it did.
func (w *waiting) begin() time.Time {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		w.since = now
	}
	w.n++
	return now
}

// end counts a caller that stopped waiting.
func (w *waiting) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
}

// count returns how many callers wait, and how long the first has.
func (w *waiting) count() (int, time.Duration) {
	if w == nil {
		return 0, 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return 0, 0
	}
	return w.n, time.Since(w.since)
}

// init readies s, a zero TokenSource, to use c and st (nil: no store), and
// to run its refreshes in group under key.
func (s *TokenSource) init(c *config, st Store, group *singleflight.Group, key string) {
	s.config, s.group, s.flightKey = c, group, key
	s.own = &s.owned
	if c.obs != nil {
		s.waiting = new(waiting)
	}
	if st != nil {
		s.store = newStoreSync(st)
	}
	s.cur.Store(&entry{})
}

// New returns a TokenSource that gets access tokens from the refresh grant
// (RFC 6749 section 6) at conf.Endpoint.TokenURL, with conf.ClientID,
// conf.ClientSecret (empty for a public client) and conf.Scopes (empty:
// the scopes originally granted). tok holds the refresh token and, if it
// has one, an access token that is used until it nears its Expiry, with no
// request at start-up; neither conf nor tok is modified or kept.
//
// ctx supplies values only, as in x/oauth2: [oauth2.HTTPClient] picks the
// HTTP client (default [http.DefaultClient]). Its cancellation does not
// affect the source; use [TokenSource.Close].
//
// The client secret goes in the request body, as Auth0 documents, unless
// conf.Endpoint.AuthStyle is [oauth2.AuthStyleInHeader], which sends HTTP
// Basic with the id and secret form-encoded (RFC 6749 section 2.3.1). The
// auto-detection of x/oauth2 ([oauth2.AuthStyleAutoDetect]) is not used:
// it sends the request again in the other style after any error, and a
// refresh token sent twice gets a rotating token family revoked. Redirects
// are not followed, since the request carries credentials.
//
// A refresh token returned by the endpoint replaces the old one at once; when
// none is returned the old one is kept. A token's expiry counts from when its
// request was sent. With no expires_in, a JWT access token's exp claim is
// used; an access token with neither never expires, as in x/oauth2, and is
// used until [TokenSource.Invalidate]. An expires_in of zero or less, or an
// exp not after the request, is a transient failure (the token has already
// expired); an expiry more than a year away is taken to be a year away.
//
// The token URL must use https, or http to a loopback host (tests, local
// servers), unless [WithAllowHTTP] is given. Configuration errors (a bad
// TokenURL, no refresh token, a reserved endpoint parameter) are returned by
// every call to Token, and no request is sent.
func New(ctx context.Context, conf *oauth2.Config, tok *oauth2.Token, opts ...Option) *TokenSource {
	o := resolve(opts)
	s := new(TokenSource)
	s.init(newGrantConfig(ctx, conf, o), o.store, new(singleflight.Group), refreshKey)
	if tok != nil {
		s.own.rt = tok.RefreshToken
	}
	s.startLife(tok, s.now())
	s.startBinding(tok)
	s.cur.Store(newEntry(s.tokenView(tok, time.Time{}, s.now(), 0)))
	return s
}

// newGrantConfig returns the config of sources that use the refresh grant
// of conf: New's, and a Pool's, whose sources share it.
func newGrantConfig(ctx context.Context, conf *oauth2.Config, o options) *config {
	g := &grant{json: o.json, params: o.params, revokeURL: o.revokeURL, lifetimes: o.refreshLife}
	if conf != nil {
		g.tokenURL = conf.Endpoint.TokenURL
		g.clientID = conf.ClientID
		g.clientSecret = conf.ClientSecret
		g.scopes = append([]string(nil), conf.Scopes...)
		g.basicAuth = conf.Endpoint.AuthStyle == oauth2.AuthStyleInHeader
	}
	g.err = g.check(conf, o.allowHTTP)
	g.revokeErr = g.checkRevoke(o.allowHTTP)

	hc := http.DefaultClient
	if c, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		hc = c
	}
	client := *hc
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	g.client = &client

	c := newConfig(ctx, o)
	c.grant = g
	g.now = c.now
	if o.assertion != nil {
		var err error
		if g.assert, err = newAsserter(*o.assertion, g.clientID, g.tokenURL, c.now); err != nil {
			g.err = cmp.Or(g.err, err)
			g.revokeErr = cmp.Or(g.revokeErr, err)
		}
	}
	if o.dpop {
		var err error
		if g.dpop, err = newDPoP(o.dpopKey, c.now); err != nil {
			g.err = cmp.Or(g.err, err)
			g.revokeErr = cmp.Or(g.revokeErr, err)
		}
	}
	return c
}

// Cache returns a TokenSource that caches the tokens of src, with the same
// early refresh, single flight and failure policy as [New]: use it around
// a source that has no cache of its own, or whose cache does not refresh
// early (client credentials, Google, a static source). src.Token is called
// from one goroutine at a time. Options that shape the refresh request
// ([WithJSONBody], [WithEndpointParams], [WithAllowHTTP]) are ignored.
//
// A token that src hands back unchanged (same access and refresh token)
// keeps the schedule it had, and src is asked again after a back-off, not
// on every call: a caching src renews on its own schedule.
//
// Cache of a *TokenSource returns it unchanged, as
// [oauth2.ReuseTokenSource] does for its own type.
func Cache(src oauth2.TokenSource, opts ...Option) *TokenSource {
	if ts, ok := src.(*TokenSource); ok {
		return ts
	}
	o := resolve(opts)
	c := newConfig(context.Background(), o)
	c.src = src
	s := new(TokenSource)
	s.init(c, o.store, new(singleflight.Group), refreshKey)
	return s
}

// Token returns a valid access token, refreshing it if it has expired. It
// is TokenContext with a context that never ends.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	return s.TokenContext(context.Background())
}

// TokenContext returns a valid access token.
//
// A fresh token is returned at once, without a lock. A token inside the
// early window is returned at once too, and the first such call starts one
// refresh in the background. Only when the token is within its safety
// margin of expiry (or there is none) does the caller wait for the refresh,
// which all waiting callers share; if ctx ends first, TokenContext returns an
// error wrapping ctx.Err() while the refresh goes on for the others.
//
// When a refresh fails, the cached token is still returned until its real
// expiry, safety margin included, and refreshes are tried again in the
// background; once there is no valid token, the error is returned at once: a
// [*RetryError] until its back-off ends, or an error matching
// [ErrRefreshRejected] until [TokenSource.SetToken].
//
// The returned Token is the caller's own copy, which the source never
// touches again. Its Expiry is set for x/oauth2, which treats a token as
// expired 10 s before Expiry: Expiry minus 10 s is when this source wants
// to be asked again, so that [oauth2.ReuseTokenSource] and
// [oauth2.NewClient] pick up early refreshes. It is never later than the
// access token's real expiry, which the [WithOnNewToken] callback gets.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	e, now, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	return e.handOut(now), nil
}

// current returns the entry to serve from at now, without copying: the
// fast path of Token and of Transport.
func (s *TokenSource) current(ctx context.Context) (*entry, time.Time, error) {
	now := s.now()
	if s.obs != nil {
		s.warnRefreshToken(now)
	}
	e := s.cur.Load()
	switch e.at(now) {
	case fresh:
		return e, now, nil
	case stale:
		if !e.fail.blocked(now) && e.started.CompareAndSwap(false, true) {
			s.group.DoChan(s.flightKey, s.refresh)
		}
		return e, now, nil
	}
	return s.wait(ctx, e, now)
}

// wait is the slow path of current: there is no token to hand out.
func (s *TokenSource) wait(ctx context.Context, e *entry, now time.Time) (_ *entry, _ time.Time, err error) {
	if s.closed.Load() {
		return nil, now, ErrClosed
	}
	if e.fail.blocked(now) {
		return nil, now, e.fail.err // blocked: not nil
	}
	if err := ctx.Err(); err != nil {
		return nil, now, fmt.Errorf("refreshtoken: gave up waiting for a token: %w", err)
	}
	if s.obs != nil {
		began := s.waiting.begin()
		defer func() {
			s.waiting.end()
			s.observe(Waited{Context: ctx, Refresh: s.latest.Load(), Duration: time.Since(began), Err: err})
		}()
	}
	// A second round covers a caller that joined a refresh just as it
	// ended, and whose token the caller's clock already finds expired;
	// refresh never returns an expired token of its own.
	for range 2 {
		select {
		case r := <-s.group.DoChan(s.flightKey, s.refresh):
			if r.Err != nil {
				return nil, now, r.Err
			}
			e := r.Val.(*entry)
			if now := s.now(); e.at(now) != expired {
				return e, now, nil
			}
		case <-ctx.Done():
			return nil, now, fmt.Errorf("refreshtoken: gave up waiting for a token: %w", ctx.Err())
		}
	}
	return nil, now, errors.New("refreshtoken: the new token expired before it could be handed out")
}

// now reads the source's clock.
func (c *config) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// Err returns the error of the last refresh if it failed (or if its token
// could not be saved: [ErrNotSaved]), and nil once a refresh has succeeded.
// While it is not nil, the source hands out its cached token as long as
// that is valid: a health check can report it.
func (s *TokenSource) Err() error {
	return s.cur.Load().failed().err
}

// Close stops the source. Later calls to Token return [ErrClosed]; Close
// may be called more than once. A refresh that has not sent its request
// yet is stopped. One that has is waited for, since the server may already
// have rotated the refresh token and the answer must be read, saved and
// passed to the [WithOnNewToken] callback: at most the refresh timeout for
// the request and as much again for the Save and the callback. A token
// whose Save failed is then saved once more (at most the refresh timeout
// again), and Close returns that error, wrapping [ErrNotSaved]; otherwise
// it returns nil. With [Cache], the inner source's Token cannot be bounded,
// and Close waits for it to return.
func (s *TokenSource) Close() error {
	s.closed.Store(true)
	if stop := s.stopping.Load(); stop != nil {
		(*stop)()
	}
	// Flush takes mu, which a refresh in flight holds throughout: it
	// waits for the refresh to end. A refresh that starts later sees
	// closed and does nothing.
	err := s.Flush()
	s.cur.Store(&entry{})
	return err
}
