package refreshtoken

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxBody caps how much of a token endpoint response is read.
const maxBody = 1 << 20

// grant is the refresh grant (RFC 6749 section 6): the request and the
// reading of the answer. It holds no refresh token: the TokenSource owns
// that, and passes it to token. A grant is not modified after New.
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
	lifetimes    *refreshLifetimes // of refresh tokens (WithRefreshTokenLifetime); nil: none
	err          error             // a configuration error, returned by every refresh
	// revokeURL is the revocation endpoint (WithRevocationURL), and
	// revokeErr its configuration error, returned by Revoke.
	revokeURL string
	revokeErr error
	// assert makes the client assertions (WithClientAssertion); nil: the
	// client authenticates with its secret, if any.
	assert *asserter
	// dpop signs the DPoP proofs (WithDPoP); nil: none.
	dpop *dpop
}

func (g *grant) check(conf *oauth2.Config, allowHTTP bool) error {
	if conf == nil {
		return errors.New("refreshtoken: New was given a nil *oauth2.Config")
	}
	if g.tokenURL == "" {
		return errors.New("refreshtoken: conf.Endpoint.TokenURL is empty")
	}
	if err := g.checkURL("token", g.tokenURL, allowHTTP); err != nil {
		return err
	}
	for _, k := range []string{"grant_type", "refresh_token", "client_id", "client_secret", "scope", "client_assertion", "client_assertion_type"} {
		if _, ok := g.params[k]; ok {
			return fmt.Errorf("refreshtoken: WithEndpointParams may not set %q, which the grant sets itself", k)
		}
	}
	return nil
}

// checkURL checks raw, the URL of the endpoint named what: it must parse,
// and use https, or http to a loopback host or with WithAllowHTTP, since
// the request carries the refresh token and the client's credentials.
func (g *grant) checkURL(what, raw string, allowHTTP bool) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("refreshtoken: bad %s URL: %w", what, redactURL(err, g.clientSecret))
	case u.Scheme == "https":
	case u.Scheme == "http" && (allowHTTP || loopback(u.Hostname())):
	default:
		return fmt.Errorf("refreshtoken: %s URL %s://%s must use https (http only on loopback, or with WithAllowHTTP): it carries the refresh token and the client secret", what, u.Scheme, u.Host)
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

// token makes one refresh request with the refresh token rt, of a family
// first issued at family (zero: not known). It is never
// retried: a refresh token is sent once per refresh. status is the HTTP
// status of the answer, 0 if none came. rotated is the refresh
// token of a successful answer ("" if it has none), returned even when the
// rest of the answer is unusable and err is set: the server has retired rt.
// A returned token carries rotated, or rt if there is none. No error holds
// rt, the client secret, or a secret in redactAlso (such as the cached
// access token), in any encoding the server may echo them in.
func (g *grant) token(ctx context.Context, rt string, family time.Time, redactAlso ...string) (tok *oauth2.Token, rotated string, status int, err error) {
	if g.err != nil {
		return nil, "", 0, unsentError{g.err}
	}
	if rt == "" {
		return nil, "", 0, unsentError{ErrNoToken}
	}
	// The caller's secrets, and the assertion and DPoP proof of every
	// attempt, which a server may echo: the resend's answer may echo the
	// first attempt's, whose assertion was never used. A copy: redactAlso
	// is the caller's.
	secrets := redactAlso[:len(redactAlso):len(redactAlso)]
	// A DPoP nonce challenge gets one resend (see nonceResend): no more,
	// so that a server cannot make the refresh a loop.
	for attempt := 0; ; attempt++ {
		req, assertion, err := g.request(ctx, rt)
		if err == nil {
			err = g.prove(req)
		}
		if err != nil {
			return nil, "", 0, unsentError{err}
		}
		secrets = append(secrets, assertionSecrets(assertion)...)
		secrets = append(secrets, assertionSecrets(req.Header.Get("DPoP"))...)
		sent := g.now()
		resp, err := g.client.Do(req)
		if err != nil {
			return nil, "", 0, fmt.Errorf("refreshtoken: token request failed: %w", redactURL(err, g.secrets(rt, secrets)...))
		}
		body, err := readBody(resp)
		if err != nil {
			return nil, "", resp.StatusCode, err
		}
		// Every answer's nonce is remembered; only the first is resent.
		if g.nonceResend(req, resp, body) && attempt == 0 {
			continue
		}
		tok, rotated, err = g.parse(resp, body, sent, rt, family, secrets...)
		if err == nil && g.dpop != nil {
			tok, err = dpopType(tok)
		}
		return tok, rotated, resp.StatusCode, err
	}
}

// readBody reads and closes the body of a token endpoint's answer, up to
// maxBody.
func readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("refreshtoken: reading token response (HTTP %d): %w", resp.StatusCode, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("refreshtoken: token response (HTTP %d) is larger than %d bytes", resp.StatusCode, maxBody)
	}
	return body, nil
}

// request builds the POST that sends the refresh token rt, and returns
// the client assertion it carries, if any.
func (g *grant) request(ctx context.Context, rt string) (*http.Request, string, error) {
	v := url.Values{}
	for k, vs := range g.params {
		v[k] = vs
	}
	v.Set("grant_type", "refresh_token")
	v.Set("refresh_token", rt)
	if len(g.scopes) > 0 {
		v.Set("scope", strings.Join(g.scopes, " "))
	}
	return g.post(ctx, g.tokenURL, "token", v, rt)
}

// post builds the POST of v to target (the endpoint named what, for
// errors) with the client's authentication, for a request that sends rt:
// a new client assertion (returned, for redaction), the client secret in
// the body, or HTTP Basic; form-encoded, or JSON with WithJSONBody. An
// error means nothing can be sent.
func (g *grant) post(ctx context.Context, target, what string, v url.Values, rt string) (_ *http.Request, assertion string, _ error) {
	switch {
	case g.assert != nil:
		a, err := g.assert.assertion(ctx)
		if err != nil {
			return nil, "", err
		}
		assertion = a
		v.Set("client_id", g.clientID)
		v.Set("client_assertion_type", assertionType)
		v.Set("client_assertion", assertion)
	case !g.basicAuth:
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, "", fmt.Errorf("refreshtoken: bad %s URL: %w", what, redactURL(err, g.secrets(rt, assertionSecrets(assertion))...))
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if g.basicAuth && g.assert == nil {
		req.SetBasicAuth(url.QueryEscape(g.clientID), url.QueryEscape(g.clientSecret))
	}
	return req, assertion, nil
}

// parse turns the answer to a request that sent rt, at sent, into a token,
// or into an error that wraps an *oauth2.RetrieveError when the endpoint
// answered with one. rotated, family and redactAlso are as for token. What
// is known of the refresh token's lifetime goes in the token's Extra
// (ExtraRefreshTokenExpiry).
func (g *grant) parse(resp *http.Response, body []byte, sent time.Time, rt string, family time.Time, redactAlso ...string) (tok *oauth2.Token, rotated string, err error) {
	contentType := resp.Header.Get("Content-Type")
	fields, raw, decodeErr := decode(contentType, body)
	code, _ := field(fields, "error")
	if resp.StatusCode < 200 || resp.StatusCode > 299 || code != "" {
		desc, _ := field(fields, "error_description")
		uri, _ := field(fields, "error_uri")
		at, _ := field(fields, "access_token")
		echoed, _ := field(fields, "refresh_token")
		secrets := append(g.secrets(rt, redactAlso), at, echoed)
		return nil, "", &endpointError{&oauth2.RetrieveError{
			Response:         sanitize(resp, secrets...),
			Body:             []byte(redactShown(string(body), secrets...)),
			ErrorCode:        redactShown(code, secrets...),
			ErrorDescription: redactShown(desc, secrets...),
			ErrorURI:         redactShown(uri, secrets...),
		}}
	}
	if decodeErr == errNotJSON {
		// The media type as sent (not lowercased, which would hide a secret
		// from redact but not from a reader), redacted and cut short.
		mt, _, _ := strings.Cut(contentType, ";")
		mt = redactShown(strings.TrimSpace(mt), g.secrets(rt, redactAlso)...)
		if r := []rune(mt); len(r) > 64 {
			mt = string(r[:64]) + "..."
		}
		return nil, "", fmt.Errorf("refreshtoken: token response is not a JSON object (%d bytes, Content-Type %q)", len(body), mt)
	}
	if decodeErr != nil {
		return nil, "", decodeErr
	}
	if r, err := field(fields, "refresh_token"); err == nil {
		rotated = r
	}

	tok = &oauth2.Token{RefreshToken: rt}
	if rotated != "" {
		tok.RefreshToken = rotated
	}
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"access_token", &tok.AccessToken},
		{"token_type", &tok.TokenType},
	} {
		if *f.dst, err = field(fields, f.key); err != nil {
			return nil, rotated, err
		}
	}
	if tok.AccessToken == "" {
		return nil, rotated, errors.New("refreshtoken: token response has no access_token")
	}
	life, ok, err := expiresIn(fields["expires_in"])
	if err == nil && ok {
		tok.ExpiresIn = max(int64(life/time.Second), 1)
	} else if err == nil {
		life, ok, err = jwtLifetime(tok.AccessToken, sent)
	}
	if err != nil {
		return nil, rotated, err
	}
	if ok {
		tok.Expiry = sent.Add(life)
	}
	family, rtExpiry := g.life().issue(family, sent, saidLife(func(k string) any { return fields[k] }))
	putLife(raw, family, rtExpiry, g.life().absolute > 0)
	putBinding(raw, g.binding())
	return tok.WithExtra(raw), rotated, nil
}

// secrets lists what must not appear in an error about a request that sent
// rt: rt, the client secret (and the Basic credential carrying it) and
// redactAlso.
func (g *grant) secrets(rt string, redactAlso []string) []string {
	list := append([]string{rt, g.clientSecret}, redactAlso...)
	if g.basicAuth && g.clientSecret != "" && g.assert == nil {
		// As sent in the Authorization header, which a server may echo.
		list = append(list, base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(g.clientID)+":"+url.QueryEscape(g.clientSecret))))
	}
	return list
}

// endpointError is an error answer of the token endpoint. Its message is
// short and holds no secret; errors.As finds the *oauth2.RetrieveError.
type endpointError struct {
	re *oauth2.RetrieveError
}

func (e *endpointError) Error() string {
	// Not the server's reason phrase, which may echo a secret.
	status := statusLine(e.re.Response.StatusCode)
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
