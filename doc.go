// Package refreshtoken provides an [oauth2.TokenSource] that turns one OAuth
// 2.0 refresh token into access tokens for any number of goroutines, calling
// the token endpoint once per token lifetime.
//
// A [TokenSource] made by [New] caches the access token and hands it out
// without taking a lock. It refreshes the token shortly before it expires
// (two minutes by default, at most half the token's lifetime), in the
// background, while callers keep getting the current token; only a token
// within its safety margin of expiry (10 s) makes callers wait, and they
// all share one request. The refresh token is never sent twice: with
// refresh token rotation (Auth0, RFC 9700) a reused refresh token revokes
// the whole token family. A rotated refresh token replaces the old one at
// once and is passed to the [WithOnNewToken] callback for saving before any
// caller sees the new access token. A failed refresh leaves the cached
// token in use while it is valid, and the endpoint is not called again
// before a back-off has passed.
//
// The source works as is with [oauth2.NewClient], including the early
// refresh, and in any code that takes an [oauth2.TokenSource]. [Cache] puts
// the same cache around any other token source.
//
// Package refreshtokentest provides a local Auth0-like token server for
// tests.
package refreshtoken
