package refreshtoken

import (
	"context"
	"crypto"
	"net/url"
	"time"

	"golang.org/x/oauth2"
)

// DefaultRefreshTimeout bounds one refresh when [WithRefreshTimeout] is not
// given. It is long enough for a slow endpoint and short enough that a hung
// connection does not hold every waiting caller for minutes.
const DefaultRefreshTimeout = 30 * time.Second

// An Option configures a [TokenSource] made by [New] or [Cache], or the
// sources of a [Pool].
type Option func(*options)

type options struct {
	window  window
	clock   func() time.Time // nil: time.Now
	timeout time.Duration
	onNew   func(context.Context, *oauth2.Token) error
	json    bool
	params  url.Values
	// allowHTTP lets New use a plain-http token URL on any host.
	allowHTTP bool
	revokeURL string
	store     Store
	obs       Observer
	// poolSize and poolIdle bound a Pool: zero is no bound.
	poolSize int
	poolIdle time.Duration
	limiter  *Limiter
	// refreshLife is what WithRefreshTokenLifetime states; nil: nothing.
	refreshLife *refreshLifetimes
	// assertion is WithClientAssertion's; nil: none.
	assertion *ClientAssertion
	// dpop is set by WithDPoP, with its key dpopKey (nil is an error).
	dpop    bool
	dpopKey crypto.Signer
}

func resolve(opts []Option) options {
	o := options{
		window:  window{early: DefaultEarlyRefresh, jitter: DefaultJitter},
		timeout: DefaultRefreshTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithEarlyRefresh sets how long before an access token expires the source
// starts refreshing it in the background, while callers are still handed the
// current token. The default is [DefaultEarlyRefresh] (2 minutes). For a
// token whose lifetime is known (every token the source fetched itself) the
// window is at most half of that lifetime. Zero turns early refresh off:
// callers then wait for the refresh once the token is within its safety
// margin of expiry (10 s, or a quarter of a shorter lifetime).
func WithEarlyRefresh(d time.Duration) Option {
	return func(o *options) { o.window.early = max(d, 0) }
}

// WithJitter sets how far, at most, the start of the early refresh is moved
// later, at random, per token. The default is [DefaultJitter] (30 s). It is
// capped at half the time between the start of the early window and the
// safety margin, so jitter never makes a caller wait. Zero makes refreshes
// start exactly when the window opens.
func WithJitter(d time.Duration) Option {
	return func(o *options) { o.window.jitter = max(d, 0) }
}

// WithClock sets the clock the source judges expiry by. The default, also
// used for nil, is [time.Now]. It is meant for tests; the refresh timeout always uses real
// time.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}

// WithRefreshTimeout bounds the steps of each refresh, which runs detached
// from any caller's context: reading the store, the request, and then the
// Save, the callback and the release of a shared lock together (a shared
// lock is waited for twice as long). The default, also used for d <= 0, is
// [DefaultRefreshTimeout] (30 s).
func WithRefreshTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithOnNewToken sets a function called with every new token the source
// fetches, before any caller is handed it: the place to persist a rotated
// refresh token. The token passed has the access token's real Expiry and
// the current refresh token, and is the function's to keep. If an answer
// rotated the refresh token but its access token cannot be used, f is
// called with a token that holds only the new refresh token. f runs while
// the refresh holds its lock, with a context bounded by the refresh timeout
// (shared with the Save), so callers waiting for a token wait for it too;
// it must not call the source. A panic in f is a failed callback.
//
// If it returns an error, the new token is used all the same (with rotation
// the old refresh token is already dead, so dropping the new one would lose
// everything), and the callers that were waiting for this refresh get the
// error, wrapped; when the refresh ran in the background, no caller sees
// it, so the function should report its own failures. It is not called
// again for the same token. By default nothing is called.
func WithOnNewToken(f func(ctx context.Context, tok *oauth2.Token) error) Option {
	return func(o *options) { o.onNew = f }
}

// WithJSONBody makes [New] send the refresh request as application/json, as
// in Auth0's sample request, instead of the default
// application/x-www-form-urlencoded of RFC 6749. [Cache] ignores it.
func WithJSONBody() Option {
	return func(o *options) { o.json = true }
}

// WithEndpointParams adds parameters to every refresh request made by [New],
// such as Auth0's "audience". They may not set a parameter the grant sets
// itself (grant_type, refresh_token, client_id, client_secret, scope): such a
// source fails every refresh with an error that says so. The default adds
// none. [Cache] ignores it. For access tokens for several audiences from
// one refresh token, see [TokenSource.Audience].
func WithEndpointParams(params url.Values) Option {
	return func(o *options) {
		o.params = make(url.Values, len(params))
		for k, vs := range params {
			o.params[k] = append([]string(nil), vs...)
		}
	}
}

// WithAllowHTTP lets [New] send the refresh request over plain http to any
// host. By default a token URL must use https, or http to a loopback host
// (localhost, 127.0.0.0/8, ::1): the request carries the refresh token and
// the client secret. [Cache] ignores it.
func WithAllowHTTP() Option {
	return func(o *options) { o.allowHTTP = true }
}

// WithRevocationURL sets the revocation endpoint (RFC 7009) that
// [TokenSource.Revoke] sends the refresh token to: on Auth0,
// https://YOUR_DOMAIN/oauth/revoke. Like the token URL, it must use https,
// or http to a loopback host unless [WithAllowHTTP] is given. By default
// there is none, and Revoke returns an error without sending anything
// (oauth2.Endpoint has no field for it). [Cache] ignores it.
func WithRevocationURL(u string) Option {
	return func(o *options) { o.revokeURL = u }
}

// WithStore makes the source keep its token in st, so that a rotated
// refresh token survives the process and a restarted process reuses a
// still-fresh access token instead of refreshing. The source loads st at
// its first refresh (before which a call with no valid token is one), and
// the stored token, if any, supersedes the one given to [New]. It saves
// every new token before any caller is handed it; see [Store] for the
// contract and [ErrNotSaved] for what happens when Save fails. A
// [SharedStore] is loaded at every refresh and locked around it, so that
// processes sharing it refresh one at a time and use each other's tokens.
// By default there is no store.
func WithStore(st Store) Option {
	return func(o *options) { o.store = st }
}

// WithObserver makes the source tell obs what it does: refreshes, store
// reads and saves, the shared lock, waiting callers, the 401s of its
// [Transport], SetToken. See [Observer] for which goroutine calls it and
// what it may not do. By default nothing is told, and the cached path
// pays nothing for it.
func WithObserver(obs Observer) Option {
	return func(o *options) { o.obs = obs }
}

// WithPoolSize makes a [Pool] keep at most n sources: beyond n, the least
// recently used idle sources are evicted, to be made again from their
// stores when their keys are next used. Sources in use, refreshing, or
// holding a token whose Save failed are not evicted, and may take the
// Pool past n meanwhile. The default, also used for n <= 0, is no bound.
// New and Cache ignore it.
func WithPoolSize(n int) Option {
	return func(o *options) { o.poolSize = max(n, 0) }
}

// WithPoolIdle makes a [Pool] evict the sources that no call has used for
// d, by the clock of [WithClock]: a user gone for the day costs no memory,
// and their token stays in the store. Idle sources are found during the
// Pool's calls, a few per call, not by a timer. The default, also used for
// d <= 0, is never. New and Cache ignore it.
func WithPoolIdle(d time.Duration) Option {
	return func(o *options) { o.poolIdle = max(d, 0) }
}

// WithLimiter makes the source's requests share l's budget with every
// other source given l: sources of one token endpoint, such as one per
// user of a tenant. See [Limiter] for which refreshes wait and which are
// put off. By default, and for nil, the source has no budget to keep but
// its own back-off.
func WithLimiter(l *Limiter) Option {
	return func(o *options) { o.limiter = l }
}
