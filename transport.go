package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// Transport is an [http.RoundTripper] that authorizes each request with an
// access token from Source and recovers from a 401: when the server answers
// 401 Unauthorized, Transport drops the token it used, if it is still the
// source's current token (a token that was replaced meanwhile needs no
// refresh), and sends the request once more with the source's new token.
// Only a request whose body can be sent again is retried: one with no body,
// or with GetBody set (as [http.NewRequest] sets it for bytes and strings
// readers); for another, the 401 is returned, and the next request gets a
// new token. A burst of 401s for one token causes one refresh, and a 401
// during a back-off after failed refreshes causes none: the caller gets the
// 401 as it came.
//
// Transport reads the cached token without a lock or a copy, so a request
// through it costs less than one through [oauth2.NewClient], whose
// [oauth2.ReuseTokenSource] takes a mutex per request. [NewClient] makes an
// http.Client with it.
//
// Use Transport instead of oauth2.NewClient, not inside it: oauth2.NewClient
// sets the header itself and would hide the 401 recovery. To use a Source
// with code that insists on oauth2.NewClient, pass the Source itself; it
// works there, without the 401 recovery.
type Transport struct {
	// Source supplies the tokens. It must be set.
	Source *TokenSource
	// Base sends the authorized requests. Nil means http.DefaultTransport.
	Base http.RoundTripper
}

// NewClient returns an HTTP client that authorizes its requests with
// tokens from ts, through a [Transport]. As with [oauth2.NewClient], the
// base transport and other client settings come from the *http.Client in
// ctx under [oauth2.HTTPClient], if there is one.
func NewClient(ctx context.Context, ts *TokenSource) *http.Client {
	hc := http.DefaultClient
	if c, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		hc = c
	}
	return &http.Client{
		Transport:     &Transport{Source: ts, Base: hc.Transport},
		CheckRedirect: hc.CheckRedirect,
		Jar:           hc.Jar,
		Timeout:       hc.Timeout,
	}
}

// RoundTrip authorizes req and sends it, and sends it once more with a new
// token if the server answers 401 and req can be replayed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Source == nil {
		closeBody(req)
		return nil, errors.New("refreshtoken: Transport has no Source")
	}
	e := t.Source.cur.Load()
	if !t.Source.fresh(e) {
		var err error
		if e, _, err = t.Source.current(req.Context()); err != nil {
			closeBody(req)
			return nil, err
		}
	}
	r, err := t.authorize(req, e)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.send(r)
	if err == nil {
		resp, err = t.nonceRetry(req, e, resp)
	}
	if err != nil || resp.StatusCode != http.StatusUnauthorized || (t.signer(e) != nil && nonceChallenge(resp)) {
		// A second nonce challenge is the server's to explain: the
		// token is not dropped for it.
		return resp, err
	}
	return t.unauthorized(req, e, resp)
}

// unauthorized handles resp, a 401 for req sent with e's token: it drops
// the token and sends req again with a newer one, if it can.
func (t *Transport) unauthorized(req *http.Request, e *entry, resp *http.Response) (_ *http.Response, err error) {
	// The token is dropped even when the request cannot be retried, so
	// that the next request gets a new one.
	u := Unauthorized{Context: req.Context(), Dropped: t.Source.invalidate(e.tok)}
	if t.Source.obs != nil {
		defer func() { t.Source.observe(u) }()
	}
	if !replayable(req) {
		return resp, nil
	}
	next, _, err := t.Source.current(req.Context())
	if err != nil || next.tok == e.tok {
		// No better token: the caller gets the 401 as it came.
		return resp, nil
	}
	resp, u.Retried, err = t.resend(req, next, resp)
	if !u.Retried {
		return resp, nil
	}
	if err == nil {
		// Its nonce is remembered, and a nonce challenge gets its one
		// resend, as for the first request.
		resp, err = t.nonceRetry(req, next, resp)
	}
	u.RejectedAgain = err == nil && resp.StatusCode == http.StatusUnauthorized
	return resp, err
}

// resend sends req again with e's token, in place of resp, the answer to
// it: sent is false, and resp is returned as it came, if the request could
// not be made again (its body cannot be read again, or a proof not made).
// The caller checked that req is replayable.
func (t *Transport) resend(req *http.Request, e *entry, resp *http.Response) (_ *http.Response, sent bool, err error) {
	retry, err := t.authorize(req, e)
	if err != nil {
		return resp, false, nil
	}
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, false, nil
		}
		retry.Body = body
	}
	discard(resp)
	resp, err = t.send(retry)
	return resp, true, err
}

// send sends r through the base transport and returns a response or an
// error, never both nor neither: http.Client checks this of its transport,
// but a Transport may be used on its own. When the base breaks the rule,
// send closes the bodies the base may have left open.
func (t *Transport) send(r *http.Request) (*http.Response, error) {
	base := t.base()
	resp, err := base.RoundTrip(r)
	switch {
	case err != nil && resp != nil:
		if resp.Body != nil {
			resp.Body.Close()
		}
		closeBody(r)
		return nil, err
	case err == nil && resp == nil:
		closeBody(r)
		return nil, fmt.Errorf("refreshtoken: Transport.Base (%T) returned a nil *http.Response with a nil error", base)
	}
	return resp, err
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// authorized returns a copy of req with the Authorization header set: a
// RoundTripper must not modify the request it is given.
func authorized(req *http.Request, auth string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", auth)
	return r
}

// replayable reports whether req's body can be sent a second time.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// discard reads a little of resp's body, which lets the connection be
// reused, and closes it.
func discard(resp *http.Response) {
	if resp.Body != nil { // nil from a Base that means an empty body
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
