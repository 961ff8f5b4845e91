package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/oauth2"
)

// What a refresh does with the answer: accept its token, save it and pass
// it to the callback before any caller sees it.

// save stores what fetch got, and passes it to the callback, before any
// caller is handed it. The new token is used even if its Save or the
// callback fails: with rotation the old refresh token is already dead, and
// this one is all there is. The Save and the callback share one timeout,
// apart from the request's, which may have used up its own.
func (r *round) save() {
	s := r.s
	r.after, r.cancelAfter = context.WithTimeout(s.ctx, s.timeout)
	ctx := r.after
	next, err := r.accept()
	if err != nil {
		r.saveRotation(ctx, err)
		return
	}
	if !r.replaced && r.handedBack() {
		// The inner source renews on its own schedule (a caching
		// source): ask it again after a back-off, serving its token
		// meanwhile.
		r.v.sched.refreshAt = retryAt(oneMore(&s.policy.refreshes), nil, r.now, r.v.sched.expiredAt, rand.Float64())
		r.v.fail = nil // the inner source answered
		r.changed = true
		return
	}
	s.policy.refreshes = 0
	kept := s.groupToken(r.tok)
	saved, saveErr := r.store(ctx, kept)
	if saveErr == nil && !saved {
		r.superseded(ctx)
		return
	}
	if d := r.base.drops(); d.after401 {
		// A 401 dropped the token, and so started this round. A 401
		// during a round started by the early window is not its cause:
		// servers that revoke the previous access token when a refresh
		// rotates (fosite, Hydra) answer calls still in flight with it so.
		next.drop = &drop{forced: true, rounds: d.rounds}
	}
	r.v, r.changed, r.replaced, r.accepted = next, true, true, true
	if saveErr != nil {
		// The lock is kept: the store still holds the refresh token the
		// server has retired, which no other process may send while
		// this one retries the Save.
		s.store.keep(&pendingSave{tok: kept, fetched: r.tok, from: r.from}, r.unlock)
		r.unlock = nil
		r.saveFailed(saveErr)
	} else if s.store != nil {
		s.store.pending = nil // superseded by the token just saved
		s.policy.saves = 0
	}
	r.err = errors.Join(r.err, s.notify(ctx, kept))
}

// accept checks the token fetch got, bounds its expiry and returns its
// view; r.tok becomes the round's own copy.
func (r *round) accept() (view, error) {
	if r.err != nil {
		return view{}, r.err
	}
	if r.tok == nil || r.tok.AccessToken == "" {
		return view{}, errors.New("refreshtoken: token source returned no access token")
	}
	t := *r.tok // an inner source may still hold r.tok
	t.Expiry = boundExpiry(r.now, t.Expiry)
	r.tok = &t
	issued := r.now
	if r.v.tok != nil && r.v.tok.AccessToken == t.AccessToken && r.s.src != nil {
		// The inner source's token: its lifetime is not the time it has
		// left.
		issued = r.v.sched.issued
	}
	next := r.s.tokenView(&t, issued, r.now, rand.Float64())
	if next.tok == nil {
		return view{}, errors.New("refreshtoken: token source returned a token that has already expired")
	}
	return next, nil
}

// handedBack reports whether the inner source of Cache returned the token
// the source has (same access and refresh token).
func (r *round) handedBack() bool {
	return r.s.src != nil && r.holds(r.tok) && r.v.tok.RefreshToken == r.tok.RefreshToken
}

// holds reports whether the view holds tok's access token.
func (r *round) holds(tok *oauth2.Token) bool {
	return r.v.tok != nil && tok.AccessToken != "" && r.v.tok.AccessToken == tok.AccessToken
}

// store saves tok, if the source has a store.
func (r *round) store(ctx context.Context, tok *oauth2.Token) (saved bool, err error) {
	if r.s.store == nil {
		return true, nil
	}
	began := time.Now()
	saved, err = r.s.store.save(ctx, tok, r.from)
	r.s.observe(StoreSaved{Refresh: r.id, Result: saveResult(saved, err), Duration: time.Since(began), Err: err})
	return saved, err
}

// saveResult is the result of a Save that returned saved and err.
func saveResult(saved bool, err error) SaveResult {
	switch {
	case err != nil:
		return SaveFailed
	case !saved:
		return SaveSuperseded
	}
	return SaveOK
}

// saveRotation records the failure err of a fetch, after saving the
// refresh token of an answer that rotated it but was otherwise unusable:
// the new refresh token is all there is.
func (r *round) saveRotation(ctx context.Context, err error) {
	s := r.s
	defer func() { r.fail(err) }()
	if s.grant == nil || s.own.rt == r.from {
		return
	}
	fetched := s.own.stamp(&oauth2.Token{RefreshToken: s.own.rt}, s.grant.life().absolute > 0)
	t := s.groupToken(fetched)
	saved, saveErr := r.store(ctx, t)
	switch {
	case saveErr != nil:
		// Retried by the next refresh, Flush or Close. The lock is kept:
		// the store still holds the refresh token the server retired.
		s.store.keep(&pendingSave{tok: t, fetched: fetched, from: r.from}, r.unlock)
		r.unlock = nil
		err = errors.Join(err, &saveError{saveErr})
	case !saved:
		err = errors.Join(err, errSuperseded)
		return
	case s.store != nil:
		s.store.pending = nil // superseded by the refresh token just saved
		s.policy.saves = 0
	}
	if notifyErr := s.notify(ctx, t); notifyErr != nil {
		err = errors.Join(err, notifyErr)
	}
}

// errSuperseded is the failure recorded when a shared store refuses a new
// token because another process saved a newer one first.
var errSuperseded = errors.New("refreshtoken: another process refreshed the same refresh token after this one's lease on the shared store ran out, and saved first; its token is used")

// superseded handles a token the shared store refused: another process
// refreshed the same refresh token after this one's lease ran out (a
// pause between the answer and the Save), and saved first. With rotation,
// the server keeps at most one of the two, and reuse detection makes it
// the later one, which the store holds. The new token is dropped unseen by
// any caller or the callback, and the stored one used.
func (r *round) superseded(ctx context.Context) {
	tok, err := r.s.loadStore(ctx, r.id)
	if err != nil {
		r.fail(errors.Join(errSuperseded, err))
		return
	}
	if !r.adopt(tok) {
		return // signed out, by another process
	}
	if r.v.at(r.now) == expired {
		r.fail(errSuperseded)
		return
	}
	r.changed = true // a new entry: base is marked started
}

// notify passes a copy of tok to the WithOnNewToken callback.
func (s *TokenSource) notify(ctx context.Context, tok *oauth2.Token) error {
	if s.onNew == nil {
		return nil
	}
	t := *tok
	if err := s.callback(ctx, &t); err != nil {
		return &callbackError{err}
	}
	return nil
}

// callbackError is a failure of the WithOnNewToken callback.
type callbackError struct{ err error }

func (e *callbackError) Error() string {
	return fmt.Sprintf("refreshtoken: new token is in use, but the OnNewToken callback failed: %v", e.err)
}

func (e *callbackError) Unwrap() error { return e.err }

// callback calls onNew, turning a panic into an error, so that a panic
// cannot skip what the round records after it.
func (s *TokenSource) callback(ctx context.Context, t *oauth2.Token) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("refreshtoken: panic during refresh: %v", p)
		}
	}()
	return s.onNew(ctx, t)
}
