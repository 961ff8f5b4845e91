package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
)

// Sign-out: the revocation of the refresh token (RFC 7009), and the
// sign-out left in the store so that every source sharing it stops.

// ErrRevoked is returned by Token, TokenContext and the refreshes of a
// source that is signed out: [TokenSource.Revoke] or [TokenSource.Forget]
// dropped its refresh token, in this process or, through a [Store] they
// share, in another. The source sends nothing until [TokenSource.SetToken]
// gives it a new token (the user signed in again).
//
// Test for it with errors.Is(err, refreshtoken.ErrRevoked).
var ErrRevoked = errors.New("refreshtoken: signed out: the refresh token was revoked or dropped (TokenSource.Revoke or Forget, here or in a process sharing the store); sign in again and call SetToken")

// signedOut is the refresh token of the token that Revoke and Forget save
// in place of the user's: it is no secret; every store keeps a token with
// a refresh token (and some refuse one without); and a shared store's
// compare-and-save refuses a token refreshed from any real refresh token
// over it, so that no process paused in a refresh brings a token back. A
// source that loads it is signed out.
const signedOut = "refreshtoken:signed-out"

// Revoke signs the user out: it sends the refresh token to the revocation
// endpoint set with [WithRevocationURL] (RFC 7009, as Auth0's
// /oauth/revoke: token and token_type_hint=refresh_token, with the client
// authentication and body encoding of the refresh request), and once the
// server has accepted it, drops the token. From then on Token returns
// [ErrRevoked], with no request, until [TokenSource.SetToken]; the cached
// access token is no longer handed out (the server may or may not revoke
// the access tokens it issued: Auth0's stay valid until they expire).
//
// Revoke waits for a refresh in flight to end, and revokes the refresh
// token it brought: a refresh token that a delivered answer replaced is
// never sent. With a [Store], it first loads the store, which may hold a
// newer refresh token than the source (another process rotated it); with
// a [SharedStore], it does so under the store's refresh lock and holds the
// lock until the store is updated, so that no process refreshes
// meanwhile. It then replaces the stored token with a sign-out, which
// holds no secret: every source that loads it, here or in another process
// sharing the store, returns ErrRevoked from then on. Another process
// learns of it at its next load (its next refresh, or after a 401): until
// then it hands out the access token it holds.
//
// If the source is signed out already (a second Revoke, or another
// process revoked the token), Revoke sends nothing and returns nil. A
// source with no refresh token is dropped, with nothing sent.
//
// If the revocation fails (the endpoint unreachable, an error answer: the
// error wraps its *oauth2.RetrieveError), or the store cannot be read or
// locked, the token is kept, in the source and the store, and the error
// returned holds no secret; call Revoke again, or [TokenSource.Forget] to
// drop the token without telling the server. A revocation that reached
// the server and whose answer was lost may have revoked the token: the
// source learns of it at its next refresh ([ErrRefreshRejected]); a second
// Revoke is harmless, since the server accepts a revoked token (RFC 7009).
//
// ctx bounds the wait for the lock (at most twice the refresh timeout),
// the load and the request (each at most the refresh timeout); once the
// server has accepted the revocation, the store is updated whatever ctx
// does. If that Save fails, the source is signed out all the same, and
// Revoke returns an error wrapping [ErrNotSaved]; Flush and Close save
// the sign-out again.
//
// Without WithRevocationURL, or for a source made by [Cache], Revoke sends
// nothing and returns an error. After Close it returns [ErrClosed].
func (s *TokenSource) Revoke(ctx context.Context) error {
	return s.signOut(ctx, true)
}

// Forget drops the token without telling the server, as Revoke does once
// the server has accepted the revocation: Token returns [ErrRevoked] from
// then on, until [TokenSource.SetToken], and the store, if any, holds the
// sign-out (under a [SharedStore]'s lock). The refresh token stays valid
// at the server until it expires: call Forget when Revoke failed and the
// user must be signed out here all the same. It is idempotent. The errors
// are Revoke's, less the request's.
func (s *TokenSource) Forget(ctx context.Context) error {
	return s.signOut(ctx, false)
}

// signOut is Revoke (revoke) and Forget.
func (s *TokenSource) signOut(ctx context.Context, revoke bool) error {
	if s.grant == nil {
		return errors.New("refreshtoken: Revoke and Forget need a source made by New: a Cache source has no refresh token")
	}
	if revoke && s.grant.revokeErr != nil {
		return s.grant.revokeErr
	}
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	o := &signOutCall{s: s, revoke: revoke, began: time.Now()}
	o.run(ctx)
	s.observe(o.event())
	return o.err
}

// signOutCall is one Revoke or Forget; the source's mu is held.
type signOutCall struct {
	s      *TokenSource
	revoke bool
	began  time.Time

	rt      string // the refresh token signed out
	sent    bool
	status  int
	dropped bool
	err     error
}

func (o *signOutCall) run(ctx context.Context) {
	s, ss := o.s, o.s.store
	if ss != nil && ss.shared {
		unlock, expires, err := o.lock(ctx)
		if err != nil {
			o.err = fmt.Errorf("refreshtoken: signing out: nothing was sent, and the token is kept: %w", err)
			return
		}
		defer func() {
			if p := ss.pending; p != nil && p.tok.RefreshToken != signedOut {
				// The sign-out failed, and the store still holds a
				// refresh token the server has retired: the lock stays
				// kept until the pending Save lands, as a refresh keeps
				// it, so that no other process sends that token.
				ss.held = unlock
				return
			}
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
			defer cancel()
			unlock(uctx)
		}()
		if !expires.IsZero() {
			// As a refresh's request: the request must end well before
			// the lease, after which another process may refresh.
			lctx, cancel := context.WithDeadline(ctx, time.Now().Add(time.Until(expires)*3/4))
			defer cancel()
			ctx = lctx
		}
	}
	if ss != nil && ss.due() {
		lctx, cancel := context.WithTimeout(ctx, s.timeout)
		tok, err := s.loadStore(lctx, 0)
		cancel()
		if err != nil {
			o.err = fmt.Errorf("refreshtoken: signing out: nothing was sent, and the token is kept: %w", err)
			return
		}
		if tok != nil && tok.RefreshToken == signedOut {
			// Another source signed out, maybe in another process.
			s.cur.Store(newEntry(s.signedOut(s.cur.Load().view)))
			return
		}
		if tok != nil && tok.RefreshToken != "" && tok.RefreshToken != s.rejected {
			s.own.rt = tok.RefreshToken // the latest rotation
		}
	}
	if s.own.rt == "" && errors.Is(s.cur.Load().failed().err, ErrRevoked) {
		return // signed out already
	}
	o.rt = s.own.rt
	if o.revoke && o.rt != "" {
		if !o.send(ctx) {
			return
		}
	}
	o.drop(ctx)
}

// lock takes the shared store's refresh lock, or the one kept for a
// pending Save, which this source holds already (its lease, unknown here,
// may have ended). expires is zero for a kept lock.
func (o *signOutCall) lock(ctx context.Context) (unlock func(context.Context) error, expires time.Time, err error) {
	ss := o.s.store
	if ss.held != nil {
		unlock, ss.held = ss.held, nil
		return unlock, time.Time{}, nil
	}
	wctx, cancel := context.WithTimeout(ctx, 2*o.s.timeout)
	defer cancel()
	began := time.Now()
	expires, unlock, err = ss.lock(wctx)
	o.s.observe(LockWaited{Waited: time.Since(began), Err: err})
	return unlock, expires, err
}

// send revokes o.rt at the server. It reports whether the server accepted
// the revocation.
func (o *signOutCall) send(ctx context.Context) bool {
	s := o.s
	cur := s.cur.Load()
	cached := []string{cur.drops().access}
	if cur.tok != nil {
		cached = append(cached, cur.tok.AccessToken)
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	o.status, o.sent, o.err = s.grant.revoke(rctx, o.rt, cached...)
	return o.err == nil
}

// drop signs the source out, and saves the sign-out in the store. A
// pending Save is dropped: its token is the one signed out.
func (o *signOutCall) drop(ctx context.Context) {
	s, ss := o.s, o.s.store
	s.cur.Store(newEntry(s.signedOut(s.cur.Load().view)))
	o.dropped = true
	if ss == nil {
		return
	}
	ss.pending = nil
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	tok := &oauth2.Token{RefreshToken: signedOut}
	began := time.Now()
	err := ss.force(sctx, tok)
	s.observe(StoreSaved{Result: saveResult(err == nil, err), Duration: time.Since(began), Err: err})
	if err != nil {
		ss.pending = &pendingSave{tok: tok, force: true}
		o.err = fmt.Errorf("refreshtoken: signed out, but the store still holds the token: saving the sign-out failed (Flush and Close try again): %w: %w", ErrNotSaved, err)
	}
}

func (o *signOutCall) event() Revoked {
	return Revoked{Fingerprint: Fingerprint(o.rt), Local: !o.revoke, Sent: o.sent, Status: o.status,
		Dropped: o.dropped, Duration: time.Since(o.began), Err: o.err}
}

// signedOut signs out the sources of s's group, which share its refresh
// token, and returns the view of s signed out, from cur: no token, and
// ErrRevoked until SetToken. The refresh token they had is never sent
// again, whoever brings it back. Called with own.mu held.
func (s *TokenSource) signedOut(cur view) view {
	rt := s.own.rt
	s.own.rt = ""
	s.siblings(func(m *TokenSource) {
		if rt != "" {
			m.rejected = rt
		}
		for {
			e := m.cur.Load()
			if m.cur.CompareAndSwap(e, newEntry(signedOutView(e.view))) {
				return
			}
		}
	})
	if rt != "" {
		s.rejected = rt
	}
	return signedOutView(cur)
}

// signedOutView is cur signed out: no token, ErrRevoked, and cur's access
// token remembered as dropped, so that no store brings it back.
func signedOutView(cur view) view {
	v := view{fail: &failure{err: ErrRevoked, permanent: true}, drop: &drop{access: cur.drops().access}}
	if cur.tok != nil {
		v.drop.access = cur.tok.AccessToken
	}
	return v
}

// errNoRevocationURL is the revocation error of a source without a
// revocation URL: one value, not one per source made by New.
var errNoRevocationURL = errors.New("refreshtoken: no revocation endpoint: give its URL with WithRevocationURL (Auth0: https://YOUR_DOMAIN/oauth/revoke); nothing was sent")

// checkRevoke checks the revocation URL, by the token URL's rules.
func (g *grant) checkRevoke(allowHTTP bool) error {
	if g.revokeURL == "" {
		return errNoRevocationURL
	}
	return g.checkURL("revocation", g.revokeURL, allowHTTP)
}

// revoke sends rt to the revocation endpoint. sent reports that the
// request went out, status is the answer's HTTP status (0 if none came).
// A 2xx answer without an OAuth error is success. No error holds rt, the
// client secret, or a secret in redactAlso, in any encoding a server may
// echo them in.
func (g *grant) revoke(ctx context.Context, rt string, redactAlso ...string) (status int, sent bool, err error) {
	req, assertion, err := g.revokeRequest(ctx, rt)
	if err == nil {
		err = g.prove(req)
	}
	if err != nil {
		return 0, false, err
	}
	secrets := append(g.secrets(rt, redactAlso), assertionSecrets(assertion)...)
	secrets = append(secrets, req.Header.Get("DPoP"))
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, true, fmt.Errorf("refreshtoken: revocation request failed; the token is kept: %w", redactURL(err, secrets...))
	}
	defer resp.Body.Close()
	if g.dpop != nil {
		g.dpop.remember(req.URL, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, true, fmt.Errorf("refreshtoken: reading the revocation endpoint's answer (HTTP %d); the token is kept: %w", resp.StatusCode, err)
	}
	fields, _, _ := decode(resp.Header.Get("Content-Type"), body)
	code, _ := field(fields, "error")
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 && code == "" {
		return resp.StatusCode, true, nil
	}
	desc, _ := field(fields, "error_description")
	uri, _ := field(fields, "error_uri")
	at, _ := field(fields, "access_token")
	echoed, _ := field(fields, "refresh_token")
	secrets = append(secrets, at, echoed)
	return resp.StatusCode, true, &revokeError{&oauth2.RetrieveError{
		Response:         sanitize(resp, secrets...),
		Body:             []byte(redactShown(string(body), secrets...)),
		ErrorCode:        redactShown(code, secrets...),
		ErrorDescription: redactShown(desc, secrets...),
		ErrorURI:         redactShown(uri, secrets...),
	}}
}

// revokeRequest builds the POST that revokes rt, with the client
// authentication and the encoding of the refresh request, and returns the
// client assertion it carries, if any.
func (g *grant) revokeRequest(ctx context.Context, rt string) (*http.Request, string, error) {
	v := url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}
	return g.post(ctx, g.revokeURL, "revocation", v, rt)
}

// revokeError is an error answer of the revocation endpoint. Its message
// is short and holds no secret; errors.As finds the *oauth2.RetrieveError.
type revokeError struct {
	re *oauth2.RetrieveError
}

func (e *revokeError) Error() string {
	// Not the server's reason phrase, which may echo a secret.
	msg := "refreshtoken: revocation endpoint answered " + statusLine(e.re.Response.StatusCode)
	if e.re.ErrorCode != "" {
		msg += fmt.Sprintf(": %q", e.re.ErrorCode)
		if desc := []rune(e.re.ErrorDescription); len(desc) > 200 {
			msg += fmt.Sprintf(": %q", string(desc[:200])+"...")
		} else if len(desc) > 0 {
			msg += fmt.Sprintf(": %q", string(desc))
		}
	}
	return msg + "; the token is kept"
}

func (e *revokeError) Unwrap() error { return e.re }
