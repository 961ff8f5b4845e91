package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// Refresh tokens expire too: what is known of the lifetime of the refresh
// token (the server's word, or the lifetimes the user states), and what
// the source does with it: it sends no refresh token past its expiry,
// tells the observer before, and tells when a refresh would keep it alive.

// ErrRefreshTokenExpired reports that the refresh token is past its known
// expiry ([TokenSource.RefreshTokenExpiry]), so the source did not send
// it: the server's answer is known, the user must sign in again. Errors
// that match it also match [ErrRefreshRejected], and are handled as a
// rejection: no request until [TokenSource.SetToken].
var ErrRefreshTokenExpired = errors.New("refreshtoken: refresh token expired")

// The keys of [oauth2.Token.Extra] under which a token that the source
// saves or passes to the [WithOnNewToken] callback carries what it knows
// of its refresh token's lifetime, as RFC 3339 instants: when the refresh
// token expires, and when its family was first issued (for an absolute
// lifetime, [WithRefreshTokenLifetime]). A [Store] should keep them, as
// filestore, redisstore and refreshtokentest.MemoryStore do, so that the
// expiry survives a restart; a token given to [New] or
// [TokenSource.SetToken] may carry them too.
const (
	ExtraRefreshTokenExpiry = "refresh_token_expiry"
	ExtraRefreshTokenFamily = "refresh_token_family_issued"
)

// refreshLifeFields are the answer fields that servers give a new refresh
// token's lifetime in, in seconds: Azure AD (Entra ID) and GitHub,
// Keycloak, Intuit.
var refreshLifeFields = []string{"refresh_token_expires_in", "refresh_expires_in", "x_refresh_token_expires_in"}

const (
	// maxRefreshLife bounds a refresh token lifetime a server may state;
	// a longer one is read as no limit, since a known expiry stops the
	// source from sending the refresh token, and a server bug must not
	// make it stop early.
	maxRefreshLife = 100 * 365 * 24 * time.Hour
	// refreshWarning is how long before the refresh token's expiry the
	// observer is told (at most half its lifetime, when that is known),
	// and from when a keep-alive refresh is due.
	refreshWarning = 24 * time.Hour
)

// WithRefreshTokenLifetime states the lifetimes of refresh tokens, for a
// server that does not send them (Auth0 sets them per application and
// sends neither): absolute counts from the first issue of the token family
// and rotation does not extend it; inactivity counts from the issue (or
// last use) of the refresh token, and each refresh renews it. Zero is no
// limit; the default is none.
//
// The source knows when a refresh token was issued when it refreshed it
// or was given it by [TokenSource.SetToken] (after a sign-in). For the
// token given to [New] it knows only that it is not older than New: it
// counts both lifetimes from then, and the real expiry may come sooner
// (the endpoint then answers invalid_grant). What it knows is saved with
// the token ([ExtraRefreshTokenExpiry]). A lifetime the server sends
// (refresh_token_expires_in, refresh_expires_in) is used too: the
// earliest expiry wins. See [TokenSource.RefreshTokenExpiry].
func WithRefreshTokenLifetime(absolute, inactivity time.Duration) Option {
	return func(o *options) {
		o.refreshLife = &refreshLifetimes{absolute: max(absolute, 0), inactivity: max(inactivity, 0)}
	}
}

// life returns the lifetimes the user stated; zero if none.
func (g *grant) life() refreshLifetimes {
	if g.lifetimes == nil {
		return refreshLifetimes{}
	}
	return *g.lifetimes
}

// refreshLifetimes are the lifetimes the user states.
type refreshLifetimes struct{ absolute, inactivity time.Duration }

// issue returns the family and the expiry of a refresh token issued (or
// used) at sent, in a family first issued at family (zero: not known, and
// sent is taken), for which the server stated the lifetime said (zero:
// none): the earliest of the limits known; zero if none is.
func (l refreshLifetimes) issue(family, sent time.Time, said time.Duration) (time.Time, time.Time) {
	if family.IsZero() || family.After(sent) {
		family = sent
	}
	var expiry time.Time
	if said > 0 {
		expiry = sent.Add(said)
	}
	if l.inactivity > 0 {
		expiry = earliest(expiry, sent.Add(l.inactivity))
	}
	if l.absolute > 0 {
		expiry = earliest(expiry, family.Add(l.absolute))
	}
	return family, expiry
}

// earliest returns the earlier of a and b; zero is never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// saidLife reads the refresh token lifetime of an answer, whose field k
// is field(k): a positive number of seconds, or a numeric string, in the
// first of refreshLifeFields present. Anything else (zero, which Keycloak
// sends for no limit, a negative number, a huge one, another type) is no
// limit: a lifetime read wrong would stop the source from refreshing.
func saidLife(field func(k string) any) time.Duration {
	for _, k := range refreshLifeFields {
		var f float64
		switch v := field(k).(type) {
		case nil:
			continue
		case float64:
			f = v
		case int64: // Extra of a form answer
			f = float64(v)
		case string:
			var err error
			if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
				return 0
			}
		default:
			return 0
		}
		if math.IsNaN(f) || f <= 0 || f*float64(time.Second) > float64(maxRefreshLife) {
			return 0
		}
		return time.Duration(f * float64(time.Second))
	}
	return 0
}

// putLife records in raw, the answer's fields behind Token.Extra, what is
// known of the new refresh token's lifetime, replacing any field of those
// names the server sent.
func putLife(raw any, family, expiry time.Time, absolute bool) {
	set := func(k string, t time.Time) {
		v := ""
		if !t.IsZero() {
			v = t.UTC().Format(time.RFC3339Nano)
		}
		putExtra(raw, k, v)
	}
	set(ExtraRefreshTokenExpiry, expiry)
	if !absolute || expiry.IsZero() {
		family = time.Time{}
	}
	set(ExtraRefreshTokenFamily, family)
}

// lifeOf reads what tok carries of its refresh token's lifetime; ok is
// false if it carries no expiry.
func lifeOf(tok *oauth2.Token) (family, expiry time.Time, ok bool) {
	read := func(k string) time.Time {
		s, _ := tok.Extra(k).(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}
		}
		return t
	}
	expiry = read(ExtraRefreshTokenExpiry)
	return read(ExtraRefreshTokenFamily), expiry, !expiry.IsZero()
}

// rtLife is what is known of the lifetime of the group's refresh token.
// It is published whole in owner.life, and never changed but for warned.
type rtLife struct {
	family, issued time.Time // issued: zero if not known (a stored token)
	expiry         time.Time
	said           time.Duration // the server's word, zero if none
	// stuck reports that the refresh that issued it did not push the
	// expiry back: a keep-alive would not either.
	stuck       bool
	fingerprint string      // of the refresh token, for the event
	warnAt      time.Time   // the start of the warning window
	warned      atomic.Bool // the observer was told
}

// setLife publishes what is known of the lifetime of rt, the group's new
// refresh token: nil if its expiry is not known. Called with own.mu held.
func (own *owner) setLife(rt string, family, issued, expiry time.Time, said time.Duration) {
	own.setLifeStuck(rt, family, issued, expiry, said, false)
}

// setLifeStuck is setLife, with stuck as in rtLife.
func (own *owner) setLifeStuck(rt string, family, issued, expiry time.Time, said time.Duration, stuck bool) {
	if expiry.IsZero() {
		own.life.Store(nil)
		return
	}
	window := refreshWarning
	if !issued.IsZero() && expiry.After(issued) {
		window = min(window, expiry.Sub(issued)/2)
	}
	own.life.Store(&rtLife{family: family, issued: issued, expiry: expiry, said: said, stuck: stuck,
		fingerprint: Fingerprint(rt), warnAt: expiry.Add(-window)})
}

// startLife learns the lifetime of the refresh token of tok, given to New
// or SetToken at now: what tok carries, or the user's lifetimes counted
// from now. Called with own.mu held (or before the source is shared).
func (s *TokenSource) startLife(tok *oauth2.Token, now time.Time) {
	if s.grant == nil || tok == nil || tok.RefreshToken == "" {
		s.own.life.Store(nil)
		return
	}
	family, expiry, ok := lifeOf(tok)
	issued := time.Time{}
	if !ok {
		family, expiry = s.grant.life().issue(time.Time{}, now, 0)
		issued = now
	}
	s.own.setLife(tok.RefreshToken, family, issued, expiry, 0)
}

// renewLife learns the lifetime of the refresh token of an answer to a
// request sent about now: tok, the answer's token (nil if it was
// unusable), carries it; else the user's lifetimes count from now. The
// refresh token sent was used, which renews an inactivity lifetime, even
// if the answer did not rotate it. Called with own.mu held.
func (s *TokenSource) renewLife(tok *oauth2.Token, now time.Time) {
	prev := s.own.life.Load()
	var family time.Time
	if prev != nil {
		family = prev.family
	}
	var expiry time.Time
	var said time.Duration
	if tok != nil {
		family, expiry, _ = lifeOf(tok)
		said = saidLife(tok.Extra)
	} else {
		family, expiry = s.grant.life().issue(family, now, 0)
	}
	// Time passed since the refresh token before was issued, and the
	// expiry did not move: a refresh does not push it back.
	stuck := prev != nil && now.After(prev.issued) && !expiry.IsZero() && !expiry.After(prev.expiry)
	s.own.setLifeStuck(s.own.rt, family, now, expiry, said, stuck)
}

// adoptLife learns the lifetime of a stored token's refresh token, which
// replaces (changed) or confirms the group's: what the store kept, or, for
// a new refresh token it kept nothing of, the user's lifetimes from now.
// Called with own.mu held.
func (s *TokenSource) adoptLife(tok *oauth2.Token, now time.Time, changed bool) {
	if family, expiry, ok := lifeOf(tok); ok {
		s.own.setLife(tok.RefreshToken, family, time.Time{}, expiry, 0)
	} else if changed {
		s.startLife(tok, now)
	}
}

// family returns when the refresh token's family was first issued, as
// known; zero if not.
func (own *owner) family() time.Time {
	if l := own.life.Load(); l != nil {
		return l.family
	}
	return time.Time{}
}

// stamp returns tok, a token to save that holds the group's refresh
// token, with what is known of that refresh token's lifetime and of the
// DPoP key it is bound to in its Extra (beside id_token and scope, the raw
// fields a store keeps), if tok does not carry them already: a token
// built or given rather than parsed. Called with own.mu held.
func (own *owner) stamp(tok *oauth2.Token, absolute bool) *oauth2.Token {
	l := own.life.Load()
	_, expiry, ok := lifeOf(tok)
	if (l == nil || ok && expiry.Equal(l.expiry)) && boundOf(tok) == own.bound {
		return tok
	}
	extra := map[string]any{}
	for _, k := range []string{"id_token", "scope", ExtraRefreshTokenExpiry, ExtraRefreshTokenFamily} {
		if v, ok := tok.Extra(k).(string); ok {
			extra[k] = v
		}
	}
	if l != nil {
		putLife(extra, l.family, l.expiry, absolute)
	}
	putBinding(extra, own.bound)
	t := *tok
	return t.WithExtra(extra)
}

// expiredError is the failure of a refresh token past its known expiry.
type expiredError struct{ expiry time.Time }

func (e *expiredError) Error() string {
	return fmt.Sprintf("refreshtoken: the refresh token expired at %s: it is not sent (rejected for good: sign in again, see TokenSource.SetToken)", e.expiry.UTC().Format(time.RFC3339))
}

func (e *expiredError) Is(target error) bool {
	return target == ErrRefreshTokenExpired || target == ErrRefreshRejected
}

// expired returns the error of a refresh token past its known expiry at
// now, nil if it is not.
func (own *owner) expired(now time.Time) error {
	if l := own.life.Load(); l != nil && !now.Before(l.expiry) {
		return &expiredError{l.expiry}
	}
	return nil
}

// warnRefreshToken tells the observer, once per refresh token, that its
// expiry is within the warning window at now. The caller checked that
// there is an observer.
func (s *TokenSource) warnRefreshToken(now time.Time) {
	l := s.own.life.Load()
	if l == nil || now.Before(l.warnAt) || !l.warned.CompareAndSwap(false, true) {
		return
	}
	s.observe(RefreshTokenExpiring{Expiry: l.expiry, TimeLeft: l.expiry.Sub(now), Fingerprint: l.fingerprint, KeepAlive: !s.keepAliveAt(l).IsZero()})
}

// RefreshTokenExpiry returns when the source's refresh token (its group's,
// see [TokenSource.Audience]) expires, by the source's clock, as far as
// it knows: from the lifetime the server sent with it
// (refresh_token_expires_in, refresh_expires_in, x_refresh_token_expires_in)
// or the lifetimes stated with [WithRefreshTokenLifetime], saved with the
// token in a [Store]; zero if it knows none. From then on the source sends
// it no more and returns [ErrRefreshTokenExpired]. The observer is told
// ([RefreshTokenExpiring]) by the first call to Token, or refresh, within
// a day of it (half its lifetime, if shorter). It takes no lock.
func (s *TokenSource) RefreshTokenExpiry() time.Time {
	if l := s.own.life.Load(); l != nil {
		return l.expiry
	}
	return time.Time{}
}

// KeepAliveAt returns when a refresh is due only to keep the refresh
// token alive: the start of the warning window of its expiry (see
// [TokenSource.RefreshTokenExpiry]), if a refresh then would push the
// expiry back (an inactivity lifetime, or a server's that slides). It
// returns zero if none is due: the expiry is not known, or the absolute
// lifetime binds, or the refresh that issued the refresh token did not
// push its expiry back, or it was issued in its own warning window. Nothing refreshes on its own
// then; [TokenSource.KeepAlive] does, for a user whose source is not
// used. It takes no lock.
func (s *TokenSource) KeepAliveAt() time.Time {
	return s.keepAliveAt(s.own.life.Load())
}

// keepAliveAt is KeepAliveAt for l, the published lifetime.
func (s *TokenSource) keepAliveAt(l *rtLife) time.Time {
	switch {
	case l == nil || s.grant == nil || l.stuck:
		return time.Time{}
	case !l.issued.IsZero() && !l.issued.Before(l.warnAt):
		return time.Time{} // a refresh in the window did not push it out
	}
	// The expiry a refresh at warnAt would give the next refresh token,
	// taking a lifetime the server stated to be the same again; zero (no
	// limit known) if the expiry came from a store and the server's word
	// is not known.
	if _, next := s.grant.life().issue(l.family, l.warnAt, l.said); laterExpiry(next, l.expiry) {
		return l.warnAt
	}
	return time.Time{}
}

// KeepAlive refreshes now if a keep-alive refresh is due
// ([TokenSource.KeepAliveAt]), though the access token may be fresh, so
// that the server renews the refresh token before its inactivity lifetime
// ends; otherwise it does nothing and returns nil. The refresh is an
// ordinary one (store, lock, saves, events with [ReasonKeepAlive]) and
// is shared by concurrent calls; ctx bounds the wait for it, not the
// refresh. It returns the refresh's error.
func (s *TokenSource) KeepAlive(ctx context.Context) error {
	if at := s.KeepAliveAt(); at.IsZero() || s.now().Before(at) {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	select {
	case r := <-s.keepAlives.DoChan(s.flightKey, s.keepAlive):
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("refreshtoken: gave up waiting for a keep-alive refresh: %w", ctx.Err())
	}
}

// keepAliveDue reports whether a keep-alive round at now must refresh,
// whatever the access token: KeepAliveAt has come.
func (r *round) keepAliveDue() bool {
	if !r.keepAlive {
		return false
	}
	at := r.s.KeepAliveAt()
	return !at.IsZero() && !r.now.Before(at)
}
