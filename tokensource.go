package refreshtoken

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxBody caps how much of a token endpoint response is read.
const maxBody = 1 << 20

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
	if tok != nil {
		g.refreshToken = tok.RefreshToken
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

// grant is the refresh grant. Its refreshToken is guarded by the mu of the
// TokenSource that calls token.
type grant struct {
	tokenURL     string
	clientID     string
	clientSecret string
	scopes       []string
	basicAuth    bool
	json         bool
	params       url.Values
	client       *http.Client
	now          func() time.Time
	err          error // a configuration error, returned by every refresh

	refreshToken string
}

func (g *grant) check(conf *oauth2.Config, allowHTTP bool) error {
	if conf == nil {
		return errors.New("refreshtoken: New was given a nil *oauth2.Config")
	}
	u, err := url.Parse(g.tokenURL)
	switch {
	case g.tokenURL == "":
		return errors.New("refreshtoken: conf.Endpoint.TokenURL is empty")
	case err != nil:
		return fmt.Errorf("refreshtoken: bad token URL: %w", err)
	case u.Scheme == "https":
	case u.Scheme == "http" && (allowHTTP || loopback(u.Hostname())):
	default:
		return fmt.Errorf("refreshtoken: token URL %s://%s must use https (http only on loopback, or with WithAllowHTTP): it carries the refresh token and the client secret", u.Scheme, u.Host)
	}
	for _, k := range []string{"grant_type", "refresh_token", "client_id", "client_secret", "scope"} {
		if _, ok := g.params[k]; ok {
			return fmt.Errorf("refreshtoken: WithEndpointParams may not set %q, which the grant sets itself", k)
		}
	}
	return nil
}

// loopback reports whether host is this machine: localhost or a loopback
// address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// unsentError is a failure of the grant before any request was sent: the
// refresh token is still current, whatever the server.
type unsentError struct{ error }

func (e unsentError) Unwrap() error { return e.error }

// token makes one refresh request. It is called with the TokenSource's mu
// held, and is never retried: a refresh token is sent once per refresh.
func (g *grant) token(ctx context.Context) (*oauth2.Token, error) {
	if g.err != nil {
		return nil, unsentError{g.err}
	}
	if g.refreshToken == "" {
		return nil, unsentError{errors.New("refreshtoken: the source has no refresh token")}
	}
	req, err := g.request(ctx)
	if err != nil {
		return nil, unsentError{err}
	}
	sent := g.now()
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("refreshtoken: token request failed: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("refreshtoken: reading token response (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("refreshtoken: token response (HTTP %d) is larger than %d bytes", resp.StatusCode, maxBody)
	}
	return g.parse(resp, body, sent)
}

// request builds the POST for the current refresh token.
func (g *grant) request(ctx context.Context) (*http.Request, error) {
	v := url.Values{}
	for k, vs := range g.params {
		v[k] = vs
	}
	v.Set("grant_type", "refresh_token")
	v.Set("refresh_token", g.refreshToken)
	if len(g.scopes) > 0 {
		v.Set("scope", strings.Join(g.scopes, " "))
	}
	if !g.basicAuth {
		v.Set("client_id", g.clientID)
		if g.clientSecret != "" {
			v.Set("client_secret", g.clientSecret)
		}
	}

	var body []byte
	contentType := "application/x-www-form-urlencoded"
	if g.json {
		m := make(map[string]any, len(v))
		for k, vs := range v {
			if len(vs) == 1 {
				m[k] = vs[0]
			} else {
				m[k] = vs
			}
		}
		body, _ = json.Marshal(m) // a map of strings always marshals
		contentType = "application/json"
	} else {
		body = []byte(v.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.tokenURL, bytes.NewReader(body))
	if err != nil {
		// The URL is the user's configuration, not a secret.
		return nil, fmt.Errorf("refreshtoken: bad token URL: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if g.basicAuth {
		req.SetBasicAuth(url.QueryEscape(g.clientID), url.QueryEscape(g.clientSecret))
	}
	return req, nil
}

// parse turns a token endpoint answer into a token, or into an error that
// wraps an *oauth2.RetrieveError. A refresh token in a successful answer
// replaces g's at once, even if the rest of the answer is unusable: the
// server has retired the old one.
func (g *grant) parse(resp *http.Response, body []byte, sent time.Time) (*oauth2.Token, error) {
	fields, raw, decodeErr := decode(resp.Header.Get("Content-Type"), body)
	code, _ := field(fields, "error")
	if resp.StatusCode < 200 || resp.StatusCode > 299 || code != "" {
		desc, _ := field(fields, "error_description")
		uri, _ := field(fields, "error_uri")
		at, _ := field(fields, "access_token")
		rt, _ := field(fields, "refresh_token")
		secrets := []string{g.refreshToken, g.clientSecret, at, rt}
		return nil, &endpointError{&oauth2.RetrieveError{
			Response:         sanitize(resp),
			Body:             []byte(redact(string(body), secrets...)),
			ErrorCode:        redact(code, secrets...),
			ErrorDescription: redact(desc, secrets...),
			ErrorURI:         redact(uri, secrets...),
		}}
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	if rt, err := field(fields, "refresh_token"); err == nil && rt != "" {
		g.refreshToken = rt
	}

	tok := &oauth2.Token{RefreshToken: g.refreshToken}
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"access_token", &tok.AccessToken},
		{"token_type", &tok.TokenType},
	} {
		if *f.dst, err = field(fields, f.key); err != nil {
			return nil, err
		}
	}
	if tok.AccessToken == "" {
		return nil, errors.New("refreshtoken: token response has no access_token")
	}
	secs, err := expiresIn(fields["expires_in"])
	if err != nil {
		return nil, err
	}
	if secs > 0 {
		tok.ExpiresIn = secs
		tok.Expiry = sent.Add(time.Duration(secs) * time.Second)
	} else if exp, ok := jwtExpiry(tok.AccessToken); ok {
		tok.Expiry = exp
	}
	return tok.WithExtra(raw), nil
}

// decode reads a token response body, JSON or the form encoding some
// servers (GitHub's) use, as x/oauth2 does. It returns the fields, and the
// raw value behind Token.Extra: a map[string]any or url.Values, as in
// x/oauth2.
func decode(contentType string, body []byte) (fields map[string]any, raw any, err error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, nil, fmt.Errorf("refreshtoken: token response is not valid %s (%d bytes)", mt, len(body))
		}
		fields := make(map[string]any, len(vals))
		for k := range vals {
			fields[k] = vals.Get(k)
		}
		return fields, vals, nil
	}
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		// Neither the body nor the decoder's error, which quotes it: the
		// body may hold a token.
		return nil, nil, fmt.Errorf("refreshtoken: token response is not a JSON object (%d bytes, Content-Type %q)", len(body), contentType)
	}
	return fields, fields, nil
}

// field returns the string field key; "" if it is absent or null.
func field(fields map[string]any, key string) (string, error) {
	switch v := fields[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("refreshtoken: token response field %s is a %T, not a string", key, v)
	}
}

// expiresIn reads expires_in, a number or a numeric string, as whole
// seconds; 0 if absent. Like x/oauth2, values past MaxInt32 are capped.
func expiresIn(v any) (int64, error) {
	var f float64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case float64:
		f = v
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil || math.IsNaN(f) {
			return 0, fmt.Errorf("refreshtoken: token response expires_in %q is not a number", v)
		}
	default:
		return 0, fmt.Errorf("refreshtoken: token response expires_in is a %T, not a number", v)
	}
	if f <= 0 {
		return 0, nil
	}
	return int64(min(f, math.MaxInt32)), nil
}

// jwtExpiry returns the exp claim of an access token that is a JWT. The
// signature is not checked: the token came from the endpoint over TLS, and
// the claim is only used to schedule the next refresh.
func jwtExpiry(access string) (time.Time, bool) {
	parts := strings.Split(access, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil || *claims.Exp <= 0 || *claims.Exp > math.MaxInt64/2 {
		return time.Time{}, false
	}
	return time.Unix(int64(*claims.Exp), 0), true
}

// endpointError is an error answer of the token endpoint. Its message is
// short and holds no secret; errors.As finds the *oauth2.RetrieveError.
type endpointError struct {
	re *oauth2.RetrieveError
}

func (e *endpointError) Error() string {
	status := e.re.Response.Status
	if e.re.ErrorCode == "" {
		return fmt.Sprintf("refreshtoken: token endpoint answered %s", status)
	}
	desc := e.re.ErrorDescription
	if r := []rune(desc); len(r) > 200 {
		desc = string(r[:200]) + "..."
	}
	if desc == "" {
		return fmt.Sprintf("refreshtoken: token endpoint answered %s: %q", status, e.re.ErrorCode)
	}
	return fmt.Sprintf("refreshtoken: token endpoint answered %s: %q: %q", status, e.re.ErrorCode, desc)
}

func (e *endpointError) Unwrap() error { return e.re }

// redact replaces every non-empty secret in s, as it is and in the forms a
// server may echo it in: JSON-escaped and percent-encoded.
func redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		js, _ := json.Marshal(secret)
		for _, form := range []string{secret, string(js[1 : len(js)-1]), url.QueryEscape(secret), url.PathEscape(secret)} {
			s = strings.ReplaceAll(s, form, "[redacted]")
		}
	}
	return s
}

// sanitize returns resp for a RetrieveError, without the request that
// carried the credentials (in its body and Basic header): only its method
// and URL are kept.
func sanitize(resp *http.Response) *http.Response {
	r := *resp
	if resp.Request != nil {
		r.Request = &http.Request{Method: resp.Request.Method, URL: resp.Request.URL}
	}
	return &r
}
