package refreshtoken

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// preStep is what the model knew before a step.
type preStep struct {
	err             error // ts.Err()
	stats           refreshtokentest.Stats
	nreq            int      // requests the server had seen from sources
	causes          []string // why a failure may come in this step, as it starts
	lostOutstanding bool     // a rotation was lost: a reuse may follow
	last            *handed
	lastValid       bool
	retryAt         time.Time
}

// runStep runs one random step and checks the invariants after it. It
// reports whether the run goes on.
func (m *model) runStep() bool {
	m.logf("#%d %s ", m.step, m.at(m.clock.Now()))
	pre := m.before()
	var r stepResult
	stepKinds[m.pick()].do(m, &r)
	m.guard("waitIdle", func() { waitIdle(m.ts) })
	fails := m.after(pre, &r)
	m.tick()
	m.endLine()
	if len(fails) == 0 {
		return true
	}
	m.failures++
	m.report(strings.Join(fails, "\n"))
	return *modelKeepGoing
}

func (m *model) before() preStep {
	m.mu.Lock()
	nreq := len(m.reqs)
	m.mu.Unlock()
	return preStep{
		err:             m.ts.Err(),
		stats:           m.srv.Stats(),
		nreq:            nreq,
		causes:          m.causes(),
		lostOutstanding: m.lostOutstanding(),
		last:            m.last,
		lastValid:       m.lastValid,
		retryAt:         m.retryAt,
	}
}

// causes lists what the test has set up that may make a refresh fail in
// the coming step.
func (m *model) causes() []string {
	var c []string
	m.mu.Lock()
	for _, a := range m.queue {
		if a.left != 0 {
			c = append(c, "endpoint fault armed: "+a.name)
		}
	}
	if m.cbFail {
		c = append(c, "callback fails")
	}
	m.mu.Unlock()
	if m.storeFaultSteps > 0 {
		c = append(c, "store fault")
	}
	if m.liveRoot == "" {
		c = append(c, "no refresh token given")
	} else if _, alive := m.srv.Newest(m.liveRoot); !alive {
		c = append(c, "family revoked")
	}
	if m.lostOutstanding() {
		c = append(c, "a rotation was lost")
	}
	if m.rejectedSeen {
		c = append(c, "rejected for good")
	}
	return c
}

// lostOutstanding reports whether a refresh token rotated in an answer
// that was dropped is still the newest of a family the source may use:
// the source cannot know it, and sends its predecessor again, which the
// server takes as reuse unless its reuse interval tolerates it.
func (m *model) lostOutstanding() bool {
	live, _ := m.srv.Newest(m.liveRoot)
	out := false
	for n := range m.lost {
		newest, alive := m.srv.Newest(n)
		switch {
		case newest != n || !alive:
			delete(m.lost, n) // replaced or revoked: never outstanding again
		case n == live || !m.strict:
			// The live family's; or, after SetToken(nil), any family's:
			// the source may still use one it had.
			out = true
		}
	}
	return out
}

// heldRT is the refresh token the application holds for a restart, and
// where.
func (m *model) heldRT() (rt, where string) {
	if m.mode == callbackOnly {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.recorded == nil {
			return "", "the callback's record (none)"
		}
		return m.recorded.RefreshToken, "the callback's last token"
	}
	st := m.store.Stored()
	if st == nil {
		return "", "the store (empty)"
	}
	return st.RefreshToken, "the store"
}

// transient reports whether err, from Token, is one that a valid cached
// token must hide (invariant 4): not a rejection, not a failed Save or
// callback (documented to reach the callers of that refresh), not Close.
func transient(err error) bool {
	return !errors.Is(err, ErrRefreshRejected) && !errors.Is(err, ErrNotSaved) && !errors.Is(err, errCallback) && !errors.Is(err, ErrClosed)
}

func (m *model) after(pre preStep, r *stepResult) (fails []string) {
	fail := func(inv int, format string, args ...any) {
		fails = append(fails, fmt.Sprintf("invariant %d: ", inv)+fmt.Sprintf(format, args...))
	}
	now := m.clock.Now()
	m.mu.Lock()
	reqs := append([]sentRequest(nil), m.reqs[pre.nreq:]...)
	m.mu.Unlock()
	stats := m.srv.Stats()
	errAfter := m.ts.Err()
	m.mu.Lock()
	for _, n := range m.notes {
		m.note("%s", n)
	}
	m.notes = nil
	m.mu.Unlock()
	for _, q := range reqs {
		if q.fault != nil {
			m.note("sent %s, got fault %s", short(q.rt), q.fault.name)
		} else {
			m.note("sent %s", short(q.rt))
		}
	}
	if errAfter != pre.err {
		m.note("Err() = %v", errAfter)
	}

	m.cover.Requests += len(reqs)
	if !pre.retryAt.IsZero() {
		m.cover.Backoff += len(reqs)
	}
	if r.tok != nil {
		m.cover.Tokens++
	}
	if r.tokErr != nil {
		m.cover.TokenErrors++
	}
	if r.restart {
		m.cover.Restarts++
	}
	// A fault armed in this step may have reached its call.
	causes := append(pre.causes, m.causes()...)
	for _, q := range reqs {
		if q.fault != nil {
			causes = append(causes, "fault "+q.fault.name)
		}
	}
	if len(causes) == 0 {
		m.cover.Uncaused++
	}

	// 5. Bounded: each step makes at most one call that may refresh (all
	// background work is drained by waitIdle), and a restart makes none
	// with the new source, so one request per step is the most a step may
	// cause, restarts included.
	if len(reqs) > 1 {
		fail(5, "%d token requests in one step, want at most 1", len(reqs))
	}
	for _, q := range reqs {
		if q.at.Before(pre.retryAt) {
			fail(5, "token request at %s, before the RetryAt %s of a RetryError seen", m.at(q.at), m.at(pre.retryAt))
		}
	}

	// 2. Not reused. The server counts what it can tell; the model adds
	// refresh tokens rejected for good (the known defect "SetToken(nil)
	// after a rejection brings back the rejected refresh token" shows
	// here) and families SetToken replaced.
	if d := stats.ReplacedSent - pre.stats.ReplacedSent; d > 0 {
		fail(2, "%d retired refresh token(s) sent after the answer replacing them was delivered (server ReplacedSent)", d)
	}
	if d := stats.ReuseEvents - pre.stats.ReuseEvents; d > 0 && !pre.lostOutstanding {
		fail(2, "%d reuse event(s) (family revoked), with no rotation lost in a dropped answer", d)
	}
	for _, q := range reqs {
		switch {
		case m.rejected[q.rt]:
			fail(2, "sent %s again, which the server had rejected for good (no SetToken gave it back)", short(q.rt))
		case !m.strict:
		case m.liveRoot == "":
			fail(2, "sent %s, after SetToken gave a token without a refresh token", short(q.rt))
		default:
			family, _ := m.srv.Newest(q.rt)
			live, _ := m.srv.Newest(m.liveRoot)
			if family != live {
				fail(2, "sent %s, of a family SetToken replaced (live family: %s)", short(q.rt), short(m.liveRoot))
			}
		}
	}

	// 3. Not expired. The known defect "expires_in <= 0 read as never
	// expiring" shows here (a zero Expiry), after the model's
	// "expires_in 0" fault. The token is judged at the clock of the call:
	// the clock moves during a call only while a refresh waits for the
	// lock (leaseClock), and a token handed out from the cache without
	// waiting was handed out before that.
	if r.tok != nil {
		real, ok := m.srv.AccessExpiry(r.tok.AccessToken)
		switch {
		case !ok:
			fail(3, "handed out %s, which the server never issued", short(r.tok.AccessToken))
		case !r.calledAt.Before(real):
			fail(3, "handed out %s at %s, expired at %s", short(r.tok.AccessToken), m.at(r.calledAt), m.at(real))
		case r.tok.Expiry.IsZero() || r.tok.Expiry.After(real):
			fail(3, "handed out %s with Expiry %s, later than its real expiry %s", short(r.tok.AccessToken), m.at(r.tok.Expiry), m.at(real))
		}
	}

	// 4. Not turned into an error: while the endpoint (or the store) fails
	// transiently, the last token handed out is served until its real
	// expiry. The known defect "errors while a valid token is held" (the
	// back-off, and the safety margin) shows here.
	// It is checked only while the application has given a refresh token:
	// what a source with none should do near expiry is left open.
	valid := r.called && pre.last != nil && pre.lastValid && now.Before(pre.last.real) && m.liveRoot != ""
	if valid {
		m.cover.Valid++
	}
	if valid && r.tokErr != nil && transient(r.tokErr) {
		fail(4, "Token failed while %s, handed out last and not invalidated, is valid until %s: %v", short(pre.last.tok.AccessToken), m.at(pre.last.real), r.tokErr)
	}

	// 6. Explained: a new error needs a cause. The known defect "a second
	// Invalidate in a row gives an error mentioning HTTP 401" shows here:
	// Invalidate is no failure, and no API answered 401. The guard against
	// an API that rejects every token is explained by a reported 401.
	explained := func(e error) bool {
		return len(causes) > 0 || e == pre.err || (m.reported401 && errors.Is(e, errTokenRejected))
	}
	for _, e := range r.errs {
		if !explained(e) {
			fail(6, "an error with no fault set up: %v", e)
		}
	}
	if errAfter != nil && !explained(errAfter) && !r.restart {
		fail(6, "Err() = %v, with no fault set up", errAfter)
	}

	if r.restart && !r.saved {
		fail(1, "Close failed 3 times with a healthy store: the process would exit without saving its token")
	}

	m.update(pre, r, reqs, errAfter)

	// 1. Kept: checked once the model knows whether a Save is pending.
	// The known defect "an answer that re-issues the same access token
	// with a new refresh token never reaches the callback/Store" shows
	// here.
	if !m.pending && m.liveRoot != "" {
		newest, alive := m.srv.Newest(m.liveRoot)
		held, where := m.heldRT()
		if alive && newest != m.liveRoot && !m.lost[newest] {
			m.cover.Kept++
		}
		if alive && newest != m.liveRoot && !m.lost[newest] && held != newest {
			fail(1, "%s holds %s, but the server's newest refresh token of the live family is %s, and no Save is pending", where, short(held), short(newest))
		}
	}
	return fails
}

// update brings what the model knows up to date after a step.
func (m *model) update(pre preStep, r *stepResult, reqs []sentRequest, errAfter error) {
	for _, q := range reqs {
		if q.fault != nil && q.fault.fault.DropAfterRotate {
			if newest, _ := m.srv.Newest(q.rt); newest != q.newestBefore {
				m.lost[newest] = true
				m.cover.LostRotates++
				m.note("rotation to %s lost", short(newest))
			}
		}
	}
	for _, e := range []error{r.tokErr, errAfter} {
		if e == nil {
			continue
		}
		if errors.Is(e, ErrRefreshRejected) {
			m.rejectedSeen = true
			if e != pre.err && len(reqs) > 0 {
				m.rejected[reqs[len(reqs)-1].rt] = true
			}
		}
		var re *RetryError
		if errors.As(e, &re) && re.RetryAt.After(m.retryAt) {
			m.retryAt, m.retryAtIsSave = re.RetryAt, errors.Is(e, ErrNotSaved)
		}
	}
	// A Save is pending from an ErrNotSaved on until a Flush, Close or
	// SetToken(tok) succeeds, a refresh succeeds (and saves its own
	// token), or Err's ErrNotSaved clears (a retried Save succeeded).
	// Err alone does not tell: a failed Save of SetToken's token is not
	// in it.
	notSaved := errors.Is(errAfter, ErrNotSaved)
	for _, e := range r.errs {
		notSaved = notSaved || errors.Is(e, ErrNotSaved)
	}
	refreshed := len(reqs) > 0 && m.srv.Stats().Refreshes > pre.stats.Refreshes
	switch {
	case r.restart && r.saved:
		m.pending = false // the last Close saved what the failed ones had not
	case notSaved:
		m.pending = true
	case r.saved, errAfter == nil && (refreshed || errors.Is(pre.err, ErrNotSaved)):
		m.pending = false
	}
	if r.saved && m.retryAtIsSave {
		m.retryAt = time.Time{}
	}
	if r.tok != nil {
		real, _ := m.srv.AccessExpiry(r.tok.AccessToken)
		h := handed{tok: r.tok, real: real}
		m.last, m.lastValid = &h, true
		m.history = append(m.history, h)
		if len(m.history) > 8 {
			m.history = m.history[1:]
		}
	}
}
