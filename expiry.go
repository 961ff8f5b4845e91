package refreshtoken

import "time"

// The time rules of the cache. Every function here is pure: it takes the
// instant to judge at, so tests pass fixed instants instead of sleeping.

const (
	// DefaultEarlyRefresh is how long before an access token expires the
	// source starts refreshing it in the background while still handing it
	// out. Peers choose 10 s (x/oauth2), 60 s (Auth0's SDKs, Duende) and
	// 225 s (Google). Two minutes leaves room for several retries of a
	// failing endpoint before any caller has to wait, and costs a 24-hour
	// token 0.14% of its life.
	DefaultEarlyRefresh = 2 * time.Minute

	// DefaultJitter spreads the start of the early refresh over this much
	// time, so that many processes given tokens at the same moment do not
	// refresh at the same moment.
	DefaultJitter = 30 * time.Second

	// safetyMargin is how long before its expiry a token stops being handed
	// out: it covers clock skew between client and server, servers that
	// round expiry (fosite rounds to the second) and the time a request
	// spends in flight. It equals x/oauth2's expiryDelta.
	safetyMargin = 10 * time.Second

	// oauth2ExpiryDelta is x/oauth2's unexported defaultExpiryDelta: the
	// time oauth2.Token.Valid, and so ReuseTokenSource and NewClient,
	// subtract from Expiry.
	oauth2ExpiryDelta = 10 * time.Second
)

// state is where a cached token stands at a given instant.
type state int

const (
	fresh   state = iota // hand it out
	stale                // hand it out, and refresh it in the background
	expired              // do not hand it out: callers wait for a refresh
)

// window is the refresh policy of one source.
type window struct {
	early  time.Duration // DefaultEarlyRefresh unless set
	jitter time.Duration // DefaultJitter unless set
}

// schedule returns when a token that expires at expiry turns stale
// (refreshAt) and when it turns expired (expiredAt). A zero expiry means the
// token never expires, and then both results are zero (never).
//
// issued is when the request for the token was sent, or zero when not known
// (a token the caller brought). When known, the window and the margin are
// clamped to the token's lifetime: the early window to half of it, so that
// no token causes more than one refresh per half of its life, and the margin
// to a quarter, so that a 10-second token is still usable. r, in [0, 1),
// places the refresh within the jitter, which is itself clamped to half the
// gap between the start of the window and the margin.
func (w window) schedule(issued, expiry time.Time, r float64) (refreshAt, expiredAt time.Time) {
	if expiry.IsZero() {
		return time.Time{}, time.Time{}
	}
	early, margin := w.early, safetyMargin
	if !issued.IsZero() {
		life := max(expiry.Sub(issued), 0)
		early = min(early, life/2)
		margin = min(margin, life/4)
	}
	jitter := max(min(w.jitter, (early-margin)/2), 0)
	refreshAt = expiry.Add(-early + time.Duration(r*float64(jitter)))
	expiredAt = expiry.Add(-margin)
	return refreshAt, expiredAt
}

// stateAt reports the state at now of a token with the given schedule;
// zero times mean never.
func stateAt(now, refreshAt, expiredAt time.Time) state {
	switch {
	case !expiredAt.IsZero() && !now.Before(expiredAt):
		return expired
	case !refreshAt.IsZero() && !now.Before(refreshAt):
		return stale
	}
	return fresh
}

// handOutExpiry is the Expiry written on a token handed out at now. It is
// chosen for x/oauth2, which subtracts 10 s from Expiry (Token.Valid) and
// asks a wrapped source again only once that instant has passed: the copy
// reads as valid exactly until refreshAt, so oauth2.NewClient comes back
// when the early window opens, and, while the token is stale, on every call,
// picking up the refreshed token as soon as it lands. It is never later
// than the real expiry.
func handOutExpiry(now, refreshAt, expiry time.Time) time.Time {
	if expiry.IsZero() {
		return expiry
	}
	next := refreshAt
	if next.IsZero() || now.After(next) {
		next = now
	}
	next = next.Add(oauth2ExpiryDelta)
	if next.After(expiry) {
		return expiry
	}
	return next
}

// maxLifetime bounds the lifetime of any token: an expiry later than a year
// after the token was issued (or, for a token from a caller or a store,
// a year from now) is taken to be a year after it. Nothing real lasts
// longer, and a server bug (a JWT exp in milliseconds) would otherwise give
// an expiry 50,000 years away, which no store can keep. Past the bound the
// token is used until an API rejects it (see [Transport]).
const maxLifetime = 365 * 24 * time.Hour

// boundExpiry returns expiry, or now plus maxLifetime if that is sooner;
// zero (never) stays zero.
func boundExpiry(now, expiry time.Time) time.Time {
	if limit := now.Add(maxLifetime); !expiry.IsZero() && expiry.After(limit) {
		return limit
	}
	return expiry
}
