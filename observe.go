package refreshtoken

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// An Observer is told what a [TokenSource] does: its refreshes, its store
// and the 401s its [Transport] meets. Give one with [WithObserver];
// [SlogObserver] logs the events, and the otel module turns them into
// OpenTelemetry metrics and spans.
//
// Observe is called synchronously, on the goroutine that did what the
// event reports, so that events come in order: refresh, lock and store
// events on the refresh's goroutine (SetToken's and Flush's on their
// caller's), with the source's lock held; [Waited] and [Unauthorized] on
// the caller's, with no lock held. Durations in events are real
// (monotonic) time; instants and token lifetimes are by the source's clock
// ([WithClock]). A slow Observe delays that goroutine by
// its own duration (callers waiting for the refresh too) and no more, and
// should hand slow work to a goroutine of its own. Under the lock, Observe
// may call [TokenSource.Health] and [TokenSource.Err], which take no lock,
// and Token once the refresh has published a fresh token (in
// RefreshEnded); it must not call SetToken, Flush or Close, which wait
// for the lock it is called under, nor Token when the source has no valid
// token, which waits for the refresh that is calling Observe: either
// never returns. A panic in Observe is recovered and ignored; Observe must
// not end its goroutine (runtime.Goexit, t.FailNow), which would leave the
// refresh unfinished and its waiting callers waiting.
//
// Events hold no secret: a refresh token appears only as its
// [Fingerprint], and the errors of the token request are the source's,
// which name none. Errors that come from code of the user's, a [Store],
// the [WithOnNewToken] callback, or the inner source of [Cache], are passed
// on as they are: what they say is theirs. [Waited] and [Unauthorized]
// hold the caller's context, which fmt prints with its values: log its
// fields, not the event with %v.
type Observer interface {
	Observe(Event)
}

// ObserverFunc is an [Observer] that is a function.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }

// An Event is one of the types of this file: [RefreshStarted],
// [RefreshEnded], [StoreLoaded], [StoreSaved], [LockWaited],
// [LockReleased], [Waited], [Unauthorized], [TokenSet], [Revoked] and
// [RefreshTokenExpiring].
type Event interface{ event() }

// Reason is why a refresh started.
type Reason string

// The reasons of [RefreshStarted].
const (
	// ReasonEarly: the token entered its early window (stale): callers
	// are handed it while the refresh runs.
	ReasonEarly Reason = "early"
	// ReasonExpired: the token is within its safety margin of expiry,
	// or past it: callers wait.
	ReasonExpired Reason = "expired"
	// ReasonNoToken: the source has no access token yet (start-up, or
	// SetToken gave a refresh token only).
	ReasonNoToken Reason = "no_token"
	// ReasonInvalidated: Invalidate or InvalidateToken dropped the token.
	ReasonInvalidated Reason = "invalidated"
	// ReasonUnauthorized: an API answered 401 for the token
	// ([Transport], InvalidateToken): the new token is forced.
	ReasonUnauthorized Reason = "unauthorized"
	// ReasonKeepAlive: [TokenSource.KeepAlive] refreshed a fresh token so
	// that the refresh token's inactivity lifetime is renewed.
	ReasonKeepAlive Reason = "keep_alive"
)

// Outcome is how a refresh ended.
type Outcome string

// The outcomes of [RefreshEnded].
const (
	// OutcomeOK: a new token from the endpoint (or the inner source).
	OutcomeOK Outcome = "ok"
	// OutcomeStored: the store held a token that made the request
	// needless (another process refreshed); nothing was sent.
	OutcomeStored Outcome = "stored"
	// OutcomeTransient: the refresh failed and will be tried again
	// after RetryAt.
	OutcomeTransient Outcome = "transient"
	// OutcomeRejected: the endpoint rejected the refresh token for good
	// ([ErrRefreshRejected]); no refresh runs until SetToken.
	OutcomeRejected Outcome = "rejected"
	// OutcomeNotSent: the refresh failed before its request (the store
	// could not be read or locked, the source was closed).
	OutcomeNotSent Outcome = "not_sent"
	// OutcomeRevoked: the store held a sign-out ([TokenSource.Revoke] or
	// Forget, maybe in another process); nothing was sent, and no
	// refresh runs until SetToken ([ErrRevoked]).
	OutcomeRevoked Outcome = "revoked"
)

// RefreshStarted is a refresh that starts: it found a request needed and
// allowed (a refresh that finds the token fresh, or inside a back-off,
// reports nothing).
type RefreshStarted struct {
	ID     uint64 // the source's count of refreshes: matches RefreshEnded.ID
	Reason Reason
	Time   time.Time // by the source's clock
	// Fingerprint is that of the refresh token the source holds.
	Fingerprint string
	// TimeLeft is how long the token in hand had before its real
	// expiry; zero if there is none, negative if it had expired.
	TimeLeft time.Duration
}

// RefreshEnded is the end of a refresh that started.
type RefreshEnded struct {
	ID      uint64
	Reason  Reason
	Outcome Outcome
	// Err is why the refresh failed; with OutcomeOK, a failed Save
	// ([ErrNotSaved]) or callback, the new token in use all the same.
	Err      error
	Duration time.Duration // of the whole refresh, store and lock included

	// Sent reports that the token request went out; Request is how long
	// it took.
	Sent    bool
	Request time.Duration
	// Status is the HTTP status of the endpoint's answer (0 if none came,
	// or for Cache), and ErrorCode the OAuth error code of an error answer
	// ("invalid_grant").
	Status    int
	ErrorCode string
	// Fingerprint is that of the refresh token sent, and Rotated reports
	// that the answer brought a new one, whose fingerprint is
	// NewFingerprint.
	Fingerprint    string
	Rotated        bool
	NewFingerprint string
	// Lifetime is the new access token's, from the request to its real
	// expiry; zero if it has none (or none came).
	Lifetime time.Duration
	// TimeLeft is as in RefreshStarted: how close to expiry the refresh
	// ran.
	TimeLeft time.Duration
	// RetryAt is when the next attempt may run, after a transient or
	// not-sent failure; zero otherwise.
	RetryAt time.Time
	// Waiters is how many callers were waiting for a token when the
	// refresh ended, and LongestWait how long since the first of them
	// began to wait (or an earlier caller that gave up meanwhile: the
	// count has had no gap since it began).
	Waiters     int
	LongestWait time.Duration
}

// StoreLoaded is a read of the [Store].
type StoreLoaded struct {
	Refresh  uint64 // the refresh that read it; 0 for Flush
	Duration time.Duration
	Found    bool // the store held a token
	Err      error
}

// SaveResult is how a Save ended.
type SaveResult string

// The results of [StoreSaved].
const (
	SaveOK SaveResult = "ok"
	// SaveFailed: the Save failed; the token is pending, to be saved
	// again before the next refresh, and by Flush and Close.
	SaveFailed SaveResult = "failed"
	// SaveSuperseded: a shared store refused the token, since another
	// process saved a newer one first.
	SaveSuperseded SaveResult = "superseded"
)

// StoreSaved is a Save to the [Store]: of a new token, or the retry of
// one whose Save failed (Retry).
type StoreSaved struct {
	Refresh  uint64 // the refresh that saved; 0 for SetToken and Flush
	Result   SaveResult
	Retry    bool
	Duration time.Duration
	Err      error
}

// LockWaited is the wait for a [SharedStore]'s refresh lock.
type LockWaited struct {
	Refresh uint64
	Waited  time.Duration
	Err     error // nil: the lock was taken
}

// LockReleased is the release of the refresh lock. Kept reports that the
// lock was not released but left to its lease (the request got no answer,
// or the Save of a rotated token failed).
type LockReleased struct {
	Refresh uint64
	Held    time.Duration
	Kept    bool
}

// Waited is a caller of Token that had no token to be handed and waited
// for a refresh. Context is the caller's: an observer may link the
// caller's span to the refresh's.
type Waited struct {
	Context  context.Context
	Refresh  uint64 // the refresh waited for: the one in flight, or the last
	Duration time.Duration
	Err      error
}

// Unauthorized is an API's 401 met by [Transport]. Dropped reports that
// the token was the cached one and was dropped; Retried, that the request
// was sent again with a newer token; RejectedAgain, that the retry was
// answered 401 too.
type Unauthorized struct {
	Context       context.Context
	Dropped       bool
	Retried       bool
	RejectedAgain bool
}

// TokenSet is a call of [TokenSource.SetToken]. Recovered reports that it
// ended a rejection ([ErrRefreshRejected]).
type TokenSet struct {
	Fingerprint string // of the new refresh token; "" if none
	Recovered   bool
}

// Revoked is a call of [TokenSource.Revoke] or [TokenSource.Forget].
// Its store and lock events ([StoreLoaded], [StoreSaved], [LockWaited])
// come before it, with Refresh 0.
type Revoked struct {
	// Fingerprint is that of the refresh token signed out; "" if the
	// source had none, or was signed out already.
	Fingerprint string
	// Local reports a Forget: nothing is sent.
	Local bool
	// Sent reports that the revocation request was sent (it may not have
	// arrived: Err), and Status is the HTTP status of the answer, 0 if
	// none came.
	Sent   bool
	Status int
	// Dropped reports that the source was signed out by this call (it
	// returns ErrRevoked): false if the revocation failed, or if the
	// source was signed out already.
	Dropped  bool
	Duration time.Duration // of the whole call, lock and store included
	// Err is why the call failed: the revocation (the token is kept), or
	// the Save of the sign-out (ErrNotSaved: the source is signed out).
	Err error
}

// RefreshTokenExpiring is the refresh token nearing its known expiry
// ([TokenSource.RefreshTokenExpiry]): told once per refresh token, by the
// first call to Token, or refresh, within a day of it (half its
// lifetime, if shorter). Past Expiry the source returns
// [ErrRefreshTokenExpired] and the user must sign in again.
type RefreshTokenExpiring struct {
	Expiry      time.Time     // by the source's clock
	TimeLeft    time.Duration // until Expiry, when told
	Fingerprint string        // of the refresh token
	// KeepAlive reports that a refresh would push Expiry back
	// ([TokenSource.KeepAlive]): an inactivity lifetime.
	KeepAlive bool
}

func (RefreshStarted) event() {}
func (RefreshEnded) event()   {}
func (StoreLoaded) event()    {}
func (StoreSaved) event()     {}
func (LockWaited) event()     {}
func (LockReleased) event()   {}
func (Waited) event()         {}
func (Unauthorized) event()   {}
func (TokenSet) event()       {}
func (Revoked) event()        {}

func (RefreshTokenExpiring) event() {}

// Fingerprint identifies a refresh token in events and logs without
// revealing it: the first 8 hex digits of its SHA-256, so that two events
// about one token can be matched. "" for no token. It is unsalted, so one
// who sees it can check a guessed token against it (one false match in
// 2^32 guesses): that reveals nothing of a token drawn at random by the
// server, of 128 bits or more, but a short or predictable one could be
// found by trying.
func Fingerprint(refreshToken string) string {
	if refreshToken == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(refreshToken))
	return hex.EncodeToString(sum[:4])
}

// observe passes e to the observer, if there is one. A panic in it is the
// observer's and is dropped: it must not break a refresh.
func (s *TokenSource) observe(e Event) {
	if s.obs == nil {
		return
	}
	defer func() { recover() }()
	s.obs.Observe(e)
}

// reason is why a round that starts from e at now refreshes.
func reason(e *entry, now time.Time) Reason {
	switch {
	case e.tok != nil && e.at(now) == stale:
		return ReasonEarly
	case e.tok != nil:
		return ReasonExpired
	case e.drops().after401:
		return ReasonUnauthorized
	case e.drops().access != "":
		return ReasonInvalidated
	}
	return ReasonNoToken
}

// timeLeft is how long e's token has before its real expiry at now; zero
// if there is none or it never expires.
func timeLeft(e *entry, now time.Time) time.Duration {
	if e.tok == nil || e.tok.Expiry.IsZero() {
		return 0
	}
	return e.tok.Expiry.Sub(now)
}

// errorCode returns the OAuth error code of err's answer, "" if none.
func errorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}
