// Package refreshtoken provides an [oauth2.TokenSource] that turns one OAuth
// 2.0 refresh token into access tokens for any number of goroutines, calling
// the token endpoint once per token lifetime.
//
// A [TokenSource] made by [New] caches the access token and hands it out
// without taking a lock. It refreshes the token shortly before it expires
// (two minutes by default, at most half the token's lifetime), in the
// background, while callers keep getting the current token; only a token
// within its safety margin of expiry (10 s) makes callers wait, and they
// all share one request. A refresh token that a delivered answer replaced
// is never sent again: with refresh token rotation (Auth0, RFC 9700) a
// reused refresh token revokes the whole token family. A rotated refresh
// token replaces the old one at once and is passed to the [WithOnNewToken]
// callback for saving before any caller sees the new access token.
//
// When the endpoint fails, the cached token is served while it is valid.
// Transient failures (429, 5xx, network errors, garbage) are retried after a
// back-off with full jitter that honours Retry-After and X-RateLimit-Reset,
// with one request per step however many goroutines call ([RetryError]);
// a rejected refresh token (invalid_grant and the like) stops all requests
// until [TokenSource.SetToken] ([ErrRefreshRejected]).
//
// [WithStore] keeps the token in a [Store] (package filestore has one in a
// file), so that a rotated refresh token outlives the process and a
// restarted process reuses a fresh access token; the refreshtoken command
// (cmd/refreshtoken) prints tokens for scripts this way. Processes that share
// a refresh token share a [SharedStore] (module
// github.com/tokenfresh/refreshtoken/redisstore has one on Redis): a lease
// lock, a second load inside it and a compare-and-save make the fleet
// refresh once per token, as one process would.
//
// [TokenSource.Revoke] signs the user out: it revokes the refresh token at
// the server (RFC 7009) and leaves a sign-out in the store, after which
// every source on it returns [ErrRevoked] until SetToken.
//
// A backend that holds many users' refresh tokens uses a [Pool]: a source
// per key, made from the key's Store on first use and evicted when idle,
// never while in use or refreshing; its calls resolve the key each time,
// so that no evicted source can send a refresh token beside its successor.
// A [Limiter] given to the sources of one tenant ([WithLimiter]) makes them
// share its request budget, and one 429 holds them all back.
//
// The source works as is with [oauth2.NewClient], including the early
// refresh, and in any code that takes an [oauth2.TokenSource]. [NewClient]
// and [Transport] also recover from a 401 by refreshing once and retrying.
// [Cache] puts the same cache around any other token source.
// [TokenSource.Audience] gets access tokens for several APIs from one
// refresh token, with one owner of it and a cache per audience. A refresh
// token past its known expiry ([TokenSource.RefreshTokenExpiry]) is not
// sent ([ErrRefreshTokenExpired]).
//
// Package refreshtokentest provides a local Auth0-like token server, with
// fault injection, for tests.
package refreshtoken
