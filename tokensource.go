package refreshtoken

import (
	"context"
	"net/http"

	"golang.org/x/oauth2"
)

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
// used until [TokenSource.Invalidate].
//
// The token URL must use https, or http to a loopback host (tests, local
// servers), unless [WithAllowHTTP] is given. Configuration errors (a bad
// TokenURL, no refresh token, a reserved endpoint parameter) are returned by
// every call to Token, and no request is sent.
func New(ctx context.Context, conf *oauth2.Config, tok *oauth2.Token, opts ...Option) *TokenSource {
	o := resolve(opts)
	g := &grant{json: o.json, params: o.params}
	if conf != nil {
		g.tokenURL = conf.Endpoint.TokenURL
		g.clientID = conf.ClientID
		g.clientSecret = conf.ClientSecret
		g.scopes = append([]string(nil), conf.Scopes...)
		g.basicAuth = conf.Endpoint.AuthStyle == oauth2.AuthStyleInHeader
	}
	g.err = g.check(conf, o.allowHTTP)

	hc := http.DefaultClient
	if c, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		hc = c
	}
	client := *hc
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	g.client = &client

	s := newTokenSource(ctx, o)
	s.grant = g
	if tok != nil {
		s.rt = tok.RefreshToken
	}
	g.now = s.now
	s.cur.Store(s.callerEntry(tok))
	return s
}

// Cache returns a TokenSource that caches the tokens of src, with the same
// early refresh, single flight and failure policy as [New]: use it around
// a source that has no cache of its own, or whose cache does not refresh
// early (client credentials, Google, a static source). src.Token is called
// from one goroutine at a time. Options that shape the refresh request
// ([WithJSONBody], [WithEndpointParams], [WithAllowHTTP]) are ignored.
func Cache(src oauth2.TokenSource, opts ...Option) *TokenSource {
	s := newTokenSource(context.Background(), resolve(opts))
	s.src = src
	return s
}
