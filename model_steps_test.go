package refreshtoken

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// The steps of the model, with their weights (setToken's is four times
// as much while the source is rejected or has no refresh token, as an
// application signs in again). The steps that set up a fault (transient,
// reissue, permanent, storeFault) call Token in the same step half of the
// time; a fault for one request waits for it at most oneShotSteps steps,
// an outage or a store fault lasts a few steps.
var stepKinds = []struct {
	name   string
	weight int
	do     func(*model, *stepResult)
}{
	{"token", 30, (*model).stepToken},
	{"clock", 22, (*model).stepClock},
	{"invalidate", 3, (*model).stepInvalidate},
	{"invalidateToken", 4, (*model).stepInvalidateToken},
	{"setToken", 4, (*model).stepSetToken},
	{"flush", 3, (*model).stepFlush},
	{"restart", 3, (*model).stepRestart},
	{"transient", 8, (*model).stepTransient},
	{"reissue", 4, (*model).stepReissue},
	{"permanent", 1, (*model).stepPermanent},
	{"storeFault", 5, (*model).stepStoreFault},
}

// stepResult is what one step's calls returned.
type stepResult struct {
	called   bool          // Token or TokenContext was called
	calledAt time.Time     // the clock then
	tok      *oauth2.Token // what it returned
	tokErr   error
	errs     []error // every error returned: Token, SetToken, Flush, Close
	saved    bool    // a Flush, Close or SetToken(tok) returned nil
	restart  bool
	setToken bool
}

func (m *model) pick() int {
	total := 0
	weight := func(i int) int {
		w := stepKinds[i].weight
		if stepKinds[i].name == "setToken" && (m.rejectedSeen || m.liveRoot == "") {
			w *= 4
		}
		return w
	}
	for i := range stepKinds {
		total += weight(i)
	}
	n := m.rng.IntN(total)
	for i := range stepKinds {
		if n -= weight(i); n < 0 {
			return i
		}
	}
	panic("unreachable")
}

func (m *model) stepToken(r *stepResult) {
	r.called, r.calledAt = true, m.clock.Now()
	if m.rng.IntN(2) == 0 {
		m.logf("Token")
		m.guard("Token", func() { r.tok, r.tokErr = m.ts.Token() })
	} else {
		m.logf("TokenContext")
		ctx, cancel := context.WithTimeout(context.Background(), modelGuard/2)
		defer cancel()
		m.guard("TokenContext", func() { r.tok, r.tokErr = m.ts.TokenContext(ctx) })
		if ctx.Err() != nil {
			m.report(fmt.Sprintf("TokenContext was still waiting after %v (a hang): %v", modelGuard/2, r.tokErr))
			m.t.FailNow()
		}
	}
	switch {
	case r.tokErr != nil:
		m.note("error: %v", r.tokErr)
		r.errs = append(r.errs, r.tokErr)
	default:
		m.note("%s expiry %s", short(r.tok.AccessToken), m.at(r.tok.Expiry))
	}
}

// refExpiry is the expiry, by the server, of the newest access token the
// application knows of: the clock jumps are placed around it.
func (m *model) refExpiry() (time.Time, bool) {
	var best time.Time
	if m.last != nil {
		best = m.last.real
	}
	var tok *oauth2.Token
	if m.mode == callbackOnly {
		m.mu.Lock()
		tok = m.recorded
		m.mu.Unlock()
	} else {
		tok = m.store.Stored()
	}
	if tok != nil && tok.AccessToken != "" {
		if exp, ok := m.srv.AccessExpiry(tok.AccessToken); ok && exp.After(best) {
			best = exp
		}
	}
	return best, !best.IsZero()
}

func (m *model) stepClock(r *stepResult) {
	now := m.clock.Now()
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	d := sec(m.rng.IntN(3) - 1) // -1 s, 0, +1 s around a boundary
	exp, ok := m.refExpiry()
	early := min(DefaultEarlyRefresh, m.life/2)
	margin := min(10*time.Second, m.life/4)
	var kind string
	var to time.Time
	switch n := m.rng.IntN(100); {
	case n < 30:
		kind, to = "small", now.Add(sec(1+m.rng.IntN(5)))
	case n < 50 && ok:
		kind, to = "window", exp.Add(-early+d)
	case n < 70 && ok:
		kind, to = "margin", exp.Add(-margin+d)
	case n < 80 && ok:
		kind, to = "expiry", exp.Add(d)
	case n < 90 && !m.retryAt.IsZero():
		kind, to = "retryAt", m.retryAt.Truncate(time.Second).Add(time.Second+d)
	case n < 95:
		kind, to = "medium", now.Add(sec(1+m.rng.IntN(int(m.life/time.Second))))
	default:
		kind, to = "huge", now.Add(time.Duration(1+m.rng.IntN(30))*24*time.Hour)
	}
	// Whole seconds: the server's expires_in is whole seconds, and a
	// re-issued token's is rounded up (at least 1 s); on whole seconds it
	// is exact.
	to = to.Truncate(time.Second)
	if !to.After(now) {
		kind, to = kind+" (passed): small", now.Add(sec(1+m.rng.IntN(5)))
	}
	m.clock.Set(to)
	m.logf("clock %s +%v → %s", kind, to.Sub(now), m.at(to))
}

func (m *model) stepInvalidate(r *stepResult) {
	m.logf("Invalidate")
	m.ts.Invalidate()
	m.lastValid = false
}

func (m *model) stepInvalidateToken(r *stepResult) {
	if len(m.history) == 0 {
		m.logf("InvalidateToken(nil): nothing handed out yet")
		m.ts.InvalidateToken(nil)
		return
	}
	i := len(m.history) - 1
	if m.rng.IntN(10) < 3 {
		i = m.rng.IntN(len(m.history))
	}
	tok := *m.history[i].tok
	m.logf("InvalidateToken(%s, %d back)", short(tok.AccessToken), len(m.history)-1-i)
	m.ts.InvalidateToken(&tok)
	m.reported401 = true
	if m.last != nil && tok.AccessToken == m.last.tok.AccessToken {
		m.lastValid = false
	}
}

func (m *model) stepSetToken(r *stepResult) {
	var tok *oauth2.Token
	switch n := m.rng.IntN(100); {
	case n < 55:
		tok = &oauth2.Token{RefreshToken: m.srv.NewRefreshToken("offline_access")}
		m.logf("SetToken(login %s)", short(tok.RefreshToken))
	case n < 80:
		tok = m.loginDirect()
		m.logf("SetToken(login %s with %s until %s)", short(tok.RefreshToken), short(tok.AccessToken), m.at(tok.Expiry))
	case n < 90:
		m.logf("SetToken(nil)")
	default:
		full := m.loginDirect()
		tok = &oauth2.Token{AccessToken: full.AccessToken, TokenType: full.TokenType, Expiry: full.Expiry}
		m.logf("SetToken(access token only: %s until %s)", short(tok.AccessToken), m.at(tok.Expiry))
	}
	var err error
	m.guard("SetToken", func() {
		var arg *oauth2.Token
		if tok != nil {
			t := *tok
			arg = &t
		}
		err = m.ts.SetToken(arg)
	})
	r.setToken = true
	if err != nil {
		m.note("error: %v", err)
		r.errs = append(r.errs, err)
	} else if tok != nil {
		r.saved = true
	}
	m.login = tok
	m.liveRoot, m.strict = "", tok != nil
	if tok != nil {
		m.liveRoot = tok.RefreshToken
	}
	if m.mode == callbackOnly {
		m.mu.Lock()
		m.recorded = tok
		m.mu.Unlock()
	}
	m.retryAt, m.lastValid, m.rejectedSeen = time.Time{}, false, false
}

func (m *model) stepFlush(r *stepResult) {
	m.logf("Flush")
	var err error
	m.guard("Flush", func() { err = m.ts.Flush() })
	if err != nil {
		m.note("error: %v", err)
		r.errs = append(r.errs, err)
		return
	}
	r.saved = true
}

// stepRestart closes the source and starts a new one on the same store
// and server, as a restarted process would. A Close that fails (a Save
// still failing) is retried with the store repaired, as a careful process
// would before exiting: the model loses no rotated token on purpose.
func (m *model) stepRestart(r *stepResult) {
	m.logf("restart: Close")
	r.restart = true
	var err error
	for try := 1; ; try++ {
		m.guard("Close", func() { err = m.ts.Close() })
		if err != nil {
			m.note("error: %v", err)
			r.errs = append(r.errs, err)
		}
		if err == nil || try == 3 {
			break
		}
		m.note("store repaired")
		m.setStoreFault(refreshtokentest.StoreFaults{}, 0)
	}
	r.saved = err == nil
	tok := m.login
	if m.mode == callbackOnly {
		m.mu.Lock()
		tok = m.recorded
		m.mu.Unlock()
	} else if tok != nil {
		tok = &oauth2.Token{RefreshToken: tok.RefreshToken}
	}
	m.newSource(tok)
	m.note("New")
	clear(m.rejected)
	m.retryAt, m.lastValid, m.rejectedSeen = time.Time{}, false, false
}

func (m *model) stepTransient(r *stepResult) {
	retryAfter := func(secs int) http.Header { return http.Header{"Retry-After": {strconv.Itoa(secs)}} }
	kinds := []struct {
		name     string
		fault    refreshtokentest.Fault
		zero     bool
		oneShot  bool // only as a single request's fault
		rareness int  // 1 in rareness draws that pick it keep it
	}{
		{name: "429 Retry-After", fault: refreshtokentest.Fault{Status: 429}},
		{name: "503", fault: refreshtokentest.Fault{Status: 503}},
		{name: "500 Retry-After", fault: refreshtokentest.Fault{Status: 500}},
		{name: "drop", fault: refreshtokentest.Fault{Drop: true}},
		{name: "drop after rotate", fault: refreshtokentest.Fault{DropAfterRotate: true}, oneShot: true},
		{name: "truncated", fault: refreshtokentest.Fault{Truncate: true}},
		{name: "non-JSON", fault: refreshtokentest.Fault{NonJSON: true}},
		{name: "huge", fault: refreshtokentest.Fault{Huge: true}, oneShot: true, rareness: 4},
		{name: "expires_in 0", zero: true, oneShot: true},
	}
	k := kinds[m.rng.IntN(len(kinds))]
	for k.rareness > 1 && m.rng.IntN(k.rareness) != 0 {
		k = kinds[m.rng.IntN(len(kinds))]
	}
	a := &armed{name: k.name, fault: k.fault, zeroExpiresIn: k.zero, left: 1, steps: oneShotSteps}
	switch k.name {
	case "429 Retry-After", "500 Retry-After":
		secs := 1 + m.rng.IntN(90)
		a.fault.Header = retryAfter(secs)
		a.name = fmt.Sprintf("%s %d", k.name, secs)
	}
	if !k.oneShot && m.rng.IntN(10) < 3 {
		a.left, a.steps = -1, 2+m.rng.IntN(5)
		m.logf("arm outage: %s for %d steps", a.name, a.steps)
		a.steps++ // tick counts this step
	} else {
		m.logf("arm: %s for the next request (within %d steps)", a.name, oneShotSteps)
	}
	m.arm(a)
	m.maybeToken(r)
}

// maybeToken calls Token, half of the time, in the step that set up a
// fault, so that many faults meet a call at once.
func (m *model) maybeToken(r *stepResult) {
	if m.rng.IntN(2) == 0 {
		m.line.WriteString("; then ")
		m.stepToken(r)
	}
}

func (m *model) stepReissue(r *stepResult) {
	a := &armed{name: "reissue access token", fault: refreshtokentest.Fault{ReissueAccessToken: true}, left: 1, steps: oneShotSteps}
	if m.rng.IntN(10) < 3 {
		a.left, a.steps = -1, 2+m.rng.IntN(5)
		m.logf("arm: answers re-issue the access token for %d steps", a.steps)
		a.steps++ // tick counts this step
	} else {
		m.logf("arm: the next answer re-issues the access token (within %d steps)", oneShotSteps)
	}
	m.arm(a)
	m.maybeToken(r)
}

func (m *model) stepPermanent(r *stepResult) {
	if m.liveRoot != "" && m.rng.IntN(2) == 0 {
		newest, _ := m.srv.Newest(m.liveRoot)
		m.srv.Revoke(newest)
		m.logf("Revoke the live family (%s)", short(newest))
	} else {
		m.logf("arm: invalid_grant for the next request (within %d steps)", oneShotSteps)
		m.arm(&armed{name: "invalid_grant", fault: refreshtokentest.Fault{Status: 400, Error: "invalid_grant"}, left: 1, steps: oneShotSteps})
	}
	m.maybeToken(r)
}

func (m *model) stepStoreFault(r *stepResult) {
	steps := 1 + m.rng.IntN(4)
	if m.mode == callbackOnly {
		m.logf("callback fails (after recording) for %d steps", steps)
		m.cbFailSteps = steps + 1 // tick counts this step
		m.mu.Lock()
		m.cbFail = true
		m.mu.Unlock()
		m.maybeToken(r)
		return
	}
	var f refreshtokentest.StoreFaults
	var name string
	switch n := m.rng.IntN(4); {
	case n == 0:
		f, name = refreshtokentest.StoreFaults{Load: errStoreLoad}, "Load fails"
	case n == 1:
		f, name = refreshtokentest.StoreFaults{Save: errStoreSave}, "Save fails"
	case n == 2:
		f, name = refreshtokentest.StoreFaults{Save: errStoreSave, SaveLands: true}, "Save lands but fails"
	case m.mode == sharedStore:
		f, name = refreshtokentest.StoreFaults{LoseLock: true}, "lock lost"
	default:
		f, name = refreshtokentest.StoreFaults{Load: errStoreLoad, Save: errStoreSave}, "Load and Save fail"
	}
	m.logf("store: %s for %d steps", name, steps)
	m.setStoreFault(f, steps+1) // tick counts this step
	m.maybeToken(r)
}

func (m *model) setStoreFault(f refreshtokentest.StoreFaults, steps int) {
	m.storeFault, m.storeFaultSteps = f, steps
	m.store.SetFaults(f)
}

// oneShotSteps is how long a fault armed for the next request waits for
// one, the step that arms it included: a fault that stayed armed for long
// would explain (invariant 6) any error in the meantime.
const oneShotSteps = 3

// tick ends the faults whose steps are over, at the end of a step.
func (m *model) tick() {
	m.mu.Lock()
	resync := false
	for _, a := range m.queue {
		if a.left != 0 {
			if a.steps--; a.steps == 0 {
				a.left, resync = 0, true
			}
		}
	}
	m.mu.Unlock()
	if resync {
		m.resync()
	}
	if m.storeFaultSteps > 0 {
		if m.storeFaultSteps--; m.storeFaultSteps == 0 {
			m.setStoreFault(refreshtokentest.StoreFaults{}, 0)
		}
	}
	if m.cbFailSteps > 0 {
		m.cbFailSteps--
	}
	m.mu.Lock()
	m.cbFail = m.cbFailSteps > 0
	m.mu.Unlock()
}
