package refreshtoken

import (
	"context"
	"errors"
	"log/slog"
)

// SlogObserver returns an [Observer] that logs each event to l, with
// structured attributes: "refresh" (the refresh's ID, which matches a
// refresh's records), "reason", "outcome", "status", "error_code",
// "rt_fingerprint" and "new_rt_fingerprint", durations, "retry_at",
// "waiters", "err", and the like. The level says what a record needs:
//
//   - Debug: routine work: a refresh that starts or succeeds, a token
//     taken from the store, store reads and saves, the shared lock,
//     callers that waited;
//   - Info: what changes the source's course: a 401 from an API, a token
//     set by SetToken, a Save refused because another process saved first,
//     a sign-out (Revoke, Forget, or one found in the store);
//   - Warn: a refresh that failed and will be tried again, a store that
//     could not be read, an API that rejected a new token too, a
//     revocation that failed (the token is kept);
//   - Error: a refresh token rejected for good (the user must sign in
//     again), a new token whose Save or callback failed (a rotated
//     refresh token not saved may be lost), and a sign-out whose Save
//     failed.
//
// [Waited] and [Unauthorized] are logged with the caller's context, the
// others with [context.Background]. An event at a level l does not enable
// costs a call of l.Enabled and builds nothing.
func SlogObserver(l *slog.Logger) Observer {
	return slogObserver{l}
}

type slogObserver struct{ l *slog.Logger }

func (o slogObserver) Observe(e Event) {
	ctx, level, msg := classify(e)
	if ctx == nil {
		ctx = context.Background()
	}
	if !o.l.Enabled(ctx, level) {
		return
	}
	o.l.LogAttrs(ctx, level, msg, attrs(e)...)
}

// classify returns the context, level and message of e's record.
func classify(e Event) (context.Context, slog.Level, string) {
	ctx := context.Background()
	switch e := e.(type) {
	case RefreshStarted:
		return ctx, slog.LevelDebug, "refresh started"
	case RefreshEnded:
		switch {
		case e.Outcome == OutcomeRejected:
			return ctx, slog.LevelError, "refresh token rejected; sign in again"
		case e.Outcome == OutcomeTransient:
			return ctx, slog.LevelWarn, "refresh failed; retrying"
		case e.Outcome == OutcomeNotSent:
			return ctx, slog.LevelWarn, "refresh not sent; retrying"
		case e.Outcome == OutcomeRevoked:
			return ctx, slog.LevelInfo, "signed out in the store; sign in again"
		case e.Err != nil && errors.Is(e.Err, ErrNotSaved):
			return ctx, slog.LevelError, "token refreshed but not saved; a rotated refresh token may be lost"
		case e.Err != nil:
			return ctx, slog.LevelError, "token refreshed but the new-token callback failed"
		case e.Outcome == OutcomeStored:
			return ctx, slog.LevelDebug, "token taken from the store"
		}
		return ctx, slog.LevelDebug, "token refreshed"
	case StoreLoaded:
		if e.Err != nil {
			return ctx, slog.LevelWarn, "store read failed"
		}
		return ctx, slog.LevelDebug, "store read"
	case StoreSaved:
		switch e.Result {
		case SaveFailed:
			return ctx, slog.LevelError, "token not saved; retrying"
		case SaveSuperseded:
			return ctx, slog.LevelInfo, "another process saved a newer token; using it"
		}
		return ctx, slog.LevelDebug, "token saved"
	case LockWaited:
		// A failure is the refresh's, which its end reports.
		if e.Err != nil {
			return ctx, slog.LevelDebug, "refresh lock not taken"
		}
		return ctx, slog.LevelDebug, "refresh lock taken"
	case LockReleased:
		if e.Kept {
			return ctx, slog.LevelDebug, "refresh lock kept until its lease ends"
		}
		return ctx, slog.LevelDebug, "refresh lock released"
	case Waited:
		return e.Context, slog.LevelDebug, "waited for a token"
	case Unauthorized:
		if e.RejectedAgain {
			return e.Context, slog.LevelWarn, "API rejected the new token too"
		}
		return e.Context, slog.LevelInfo, "API answered 401"
	case TokenSet:
		if e.Recovered {
			return ctx, slog.LevelInfo, "token set; refreshes resume"
		}
		return ctx, slog.LevelInfo, "token set"
	case Revoked:
		switch {
		case e.Err != nil && !e.Dropped:
			return ctx, slog.LevelWarn, "sign-out failed; the token is kept"
		case e.Err != nil:
			return ctx, slog.LevelError, "signed out, but the sign-out was not saved; the store still holds the token"
		case e.Dropped && e.Local:
			return ctx, slog.LevelInfo, "signed out; the refresh token was dropped without revoking it"
		case e.Dropped:
			return ctx, slog.LevelInfo, "signed out; the refresh token was revoked"
		}
		return ctx, slog.LevelDebug, "signed out already"
	case RefreshTokenExpiring:
		if e.KeepAlive {
			return ctx, slog.LevelInfo, "refresh token expires soon unless refreshed"
		}
		return ctx, slog.LevelWarn, "refresh token expires soon; the user must sign in again"
	}
	return ctx, slog.LevelDebug, "event"
}

// attrs returns the attributes of e's record. Errors are logged by their
// text: a handler that encoded their fields could reach a response.
func attrs(e Event) []slog.Attr {
	var a []slog.Attr
	switch e := e.(type) {
	case RefreshStarted:
		a = append(a, slog.Uint64("refresh", e.ID), slog.String("reason", string(e.Reason)),
			slog.String("rt_fingerprint", e.Fingerprint), slog.Duration("time_left", e.TimeLeft))
	case RefreshEnded:
		a = append(a, slog.Uint64("refresh", e.ID), slog.String("reason", string(e.Reason)),
			slog.String("outcome", string(e.Outcome)), slog.Duration("duration", e.Duration))
		if e.Sent {
			a = append(a, slog.Duration("request", e.Request), slog.String("rt_fingerprint", e.Fingerprint))
		}
		if e.Status != 0 {
			a = append(a, slog.Int("status", e.Status))
		}
		if e.ErrorCode != "" {
			a = append(a, slog.String("error_code", e.ErrorCode))
		}
		if e.Rotated {
			a = append(a, slog.Bool("rotated", true), slog.String("new_rt_fingerprint", e.NewFingerprint))
		}
		if e.Lifetime != 0 {
			a = append(a, slog.Duration("lifetime", e.Lifetime))
		}
		a = append(a, slog.Duration("time_left", e.TimeLeft))
		if !e.RetryAt.IsZero() {
			a = append(a, slog.Time("retry_at", e.RetryAt))
		}
		if e.Waiters > 0 {
			a = append(a, slog.Int("waiters", e.Waiters), slog.Duration("longest_wait", e.LongestWait))
		}
		a = appendErr(a, e.Err)
	case StoreLoaded:
		a = append(a, slog.Uint64("refresh", e.Refresh), slog.Duration("duration", e.Duration), slog.Bool("found", e.Found))
		a = appendErr(a, e.Err)
	case StoreSaved:
		a = append(a, slog.Uint64("refresh", e.Refresh), slog.String("result", string(e.Result)), slog.Duration("duration", e.Duration))
		if e.Retry {
			a = append(a, slog.Bool("retry", true))
		}
		a = appendErr(a, e.Err)
	case LockWaited:
		a = append(a, slog.Uint64("refresh", e.Refresh), slog.Duration("waited", e.Waited))
		a = appendErr(a, e.Err)
	case LockReleased:
		a = append(a, slog.Uint64("refresh", e.Refresh), slog.Duration("held", e.Held), slog.Bool("kept", e.Kept))
	case Waited:
		a = append(a, slog.Uint64("refresh", e.Refresh), slog.Duration("duration", e.Duration))
		a = appendErr(a, e.Err)
	case Unauthorized:
		a = append(a, slog.Bool("dropped", e.Dropped), slog.Bool("retried", e.Retried), slog.Bool("rejected_again", e.RejectedAgain))
	case TokenSet:
		a = append(a, slog.String("rt_fingerprint", e.Fingerprint))
		if e.Recovered {
			a = append(a, slog.Bool("recovered", true))
		}
	case Revoked:
		a = append(a, slog.String("rt_fingerprint", e.Fingerprint), slog.Bool("local", e.Local), slog.Bool("sent", e.Sent),
			slog.Bool("dropped", e.Dropped), slog.Duration("duration", e.Duration))
		if e.Status != 0 {
			a = append(a, slog.Int("status", e.Status))
		}
		a = appendErr(a, e.Err)
	case RefreshTokenExpiring:
		a = append(a, slog.String("rt_fingerprint", e.Fingerprint), slog.Time("expiry", e.Expiry),
			slog.Duration("time_left", e.TimeLeft), slog.Bool("keep_alive", e.KeepAlive))
	}
	return a
}

func appendErr(a []slog.Attr, err error) []slog.Attr {
	if err == nil {
		return a
	}
	return append(a, slog.String("err", err.Error()))
}
