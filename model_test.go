package refreshtoken

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// The model test drives a TokenSource through random sequences of steps
// (calls, clock jumps, endpoint and store faults, restarts) against the
// test server, and after every step checks the library's first promise:
//
//  1. kept: when no Save is pending, the store (or the callback's last
//     token) holds the newest refresh token the server issued to the live
//     family;
//  2. not reused: no refresh token is sent after the answer replacing it
//     was delivered (the server's ReplacedSent and ReuseEvents), nor after
//     the server rejected it for good, nor after SetToken replaced its
//     family;
//  3. not expired: every token handed out is one the server issued, valid
//     at hand-out by the server's clock, with an Expiry no later than the
//     server's;
//  4. not turned into an error: while the last token handed out is valid
//     by the server's clock and was not invalidated by the test, a
//     transient failure does not make Token fail;
//  5. bounded: at most one token request per step, none before the RetryAt
//     of a RetryError the test saw;
//  6. explained: no error, returned or in Err, appears in a step without a
//     cause the test set up (a fault, a store fault, a revoked family).
//
// On the code of November 2026 the model catches five known defects,
// each named where it shows:
//
//   - an answer that re-issues the access token with a new refresh token
//     never reaches the callback or the Store: invariant 1 (and, with a
//     shared store, invariant 2 after the next load brings the retired
//     refresh token back);
//   - SetToken(nil) after a rejection brings back the rejected refresh
//     token: invariant 2;
//   - a second Invalidate in a row gives an error mentioning HTTP 401:
//     invariant 6;
//   - errors while a valid token is held (the back-off, the safety
//     margin): invariant 4;
//   - expires_in <= 0 read as never expiring: invariant 3, after the
//     model's own "expires_in 0" fault.
//
// It runs in package refreshtoken only for waitIdle (idle_test.go): the
// model itself uses the public API, the server's Stats and introspection,
// and the store's Stored.
//
// Replay a failure with the command it prints:
//
//	go test -run TestModel -model.seed=7 -model.steps=120 -v .
//
// and run longer with -model.steps (steps per seed) and -model.seeds, or
// the environment variables MODEL_STEPS, MODEL_SEEDS and MODEL_SEED. The
// library's own randomness (back-off jitter) is not seeded, so a replay
// may differ in when a back-off ends; the clock jumps that matter are
// taken relative to the RetryAt the model saw.

var (
	modelSeed      = flag.Uint64("model.seed", 0, "run the model test with this seed only (default: seeds 1 to -model.seeds); also $MODEL_SEED")
	modelSeeds     = flag.Int("model.seeds", 0, "number of seeds the model test runs (default 16); also $MODEL_SEEDS")
	modelSteps     = flag.Int("model.steps", 0, "steps per seed of the model test (default 1250); also $MODEL_STEPS")
	modelKeepGoing = flag.Bool("model.keepgoing", false, "report every failing step of a seed, not only the first")
	modelLogLines  = flag.Int("model.log", 150, "steps of the log printed before a failure (0: all)")
)

const (
	defaultModelSeeds = 16
	defaultModelSteps = 1250

	// modelRefreshTimeout bounds a refresh of the model's sources (real
	// time): the server is local, so only a hang comes near it.
	modelRefreshTimeout = 5 * time.Second
	// modelGuard is how long any call may take before the model reports a
	// hang: longer than a refresh plus the wait for a shared lock.
	modelGuard = 30 * time.Second
	// modelLease is the memory store's lease, on the fake clock.
	modelLease = 45 * time.Second
)

// modelT0 is where the fake clock starts, far from the wall clock: nothing
// may mix the two.
var modelT0 = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

func envOr(v int, name string, def int) int {
	if v > 0 {
		return v
	}
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func TestModel(t *testing.T) {
	steps := envOr(*modelSteps, "MODEL_STEPS", defaultModelSteps)
	var seeds []uint64
	seed := *modelSeed
	if seed == 0 {
		seed, _ = strconv.ParseUint(os.Getenv("MODEL_SEED"), 10, 64)
	}
	if seed != 0 {
		seeds = []uint64{seed}
	} else {
		for s := range envOr(*modelSeeds, "MODEL_SEEDS", defaultModelSeeds) {
			seeds = append(seeds, uint64(s+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runModel(t, seed, steps)
		})
	}
}

// storeMode is where the model's application keeps its token.
type storeMode int

const (
	sharedStore  storeMode = iota // the memory store, as a SharedStore
	plainStore                    // the memory store behind Load and Save only
	callbackOnly                  // no store: WithOnNewToken records the last token
)

func (s storeMode) String() string {
	return [...]string{"shared store", "plain store", "callback"}[s]
}

// plainStoreOf exposes only the Store methods of a memory store, so that
// the source does not use it as a SharedStore.
type plainStoreOf struct{ st *refreshtokentest.MemoryStore }

func (p plainStoreOf) Load(ctx context.Context) (*oauth2.Token, error) { return p.st.Load(ctx) }
func (p plainStoreOf) Save(ctx context.Context, tok *oauth2.Token) error {
	return p.st.Save(ctx, tok)
}

// leaseClock is the memory store as the source's SharedStore. Its lease
// runs on the fake clock, which does not move while the source waits for
// the lock: when the source asks for the lock while its own lease still
// runs (kept after a request that got no answer, or a failed Save), the
// wait would last until the lease ends, so the clock is moved there, as
// real time would have passed. The source is the only holder.
type leaseClock struct {
	*refreshtokentest.MemoryStore
	m *model

	mu      sync.Mutex
	expires time.Time // of the lease last taken
}

func (s *leaseClock) Lock(ctx context.Context) (time.Time, func(context.Context) error, error) {
	s.mu.Lock()
	held := s.expires
	s.mu.Unlock()
	if now := s.m.clock.Now(); s.Locked() && now.Before(held) {
		s.m.clock.Set(held)
		s.m.mu.Lock()
		s.m.cover.LeaseWaits++
		s.m.mu.Unlock()
		s.m.asyncNote("waiting for the lock its own lease holds: clock +%v", held.Sub(now))
	}
	expires, unlock, err := s.MemoryStore.Lock(ctx)
	if err == nil {
		// expires is on the wall clock: the lease's end on the fake one
		// is as far from its now, a whole second as every fake time is
		// (the wall clock moved a little since the store read it).
		end := s.m.clock.Now().Add(time.Until(expires))
		if t := end.Truncate(time.Second); t.Before(end) {
			end = t.Add(time.Second)
		}
		s.mu.Lock()
		s.expires = end
		s.mu.Unlock()
	}
	return expires, unlock, err
}

var (
	errStoreLoad = errors.New("model: store Load failed")
	errStoreSave = errors.New("model: store Save failed")
	errCallback  = errors.New("model: OnNewToken callback failed (after recording the token)")
)

// armed is an endpoint fault the model has injected, mirrored so that the
// model knows which request got it. The server takes faults in order: the
// oldest with requests left.
type armed struct {
	name  string
	fault refreshtokentest.Fault
	// zeroExpiresIn is a fault of the model's own: the answer, rewritten
	// on its way to the source, says expires_in 0.
	zeroExpiresIn bool
	left          int // requests still to get it; < 0: all
	steps         int // steps it stays armed, this one included
}

// sentRequest is one token request of the source, as the server got it.
type sentRequest struct {
	rt           string
	at           time.Time
	fault        *armed // nil: none
	newestBefore string // the newest refresh token of rt's family before it
}

// handed is a token handed out, with its expiry by the server.
type handed struct {
	tok  *oauth2.Token
	real time.Time
}

// coverage counts how often the invariants had something to check.
type coverage struct {
	Tokens      int // tokens handed out (invariant 3)
	TokenErrors int
	Kept        int // steps where the store had to hold a rotated token (invariant 1)
	Valid       int // Token calls with a valid, held token and a refresh token (invariant 4)
	Uncaused    int // steps with no fault set up (invariant 6)
	Requests    int // token requests (invariants 2 and 5)
	Backoff     int // of which after a RetryError was seen
	Restarts    int
	LostRotates int
	LeaseWaits  int
}

// model is one run: the system under test, the application around it, and
// what the model knows.
type model struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand
	clock  *refreshtokentest.Clock
	srv    *refreshtokentest.Server
	store  *refreshtokentest.MemoryStore
	shared *leaseClock // store, as the SharedStore of sharedStore mode
	mode   storeMode
	life   time.Duration
	reuse  time.Duration
	client *http.Client // the source's: through rewrite
	direct *http.Client // the model's own logins
	ts     *TokenSource

	// mu guards what the server's hook and the client's transport write.
	mu       sync.Mutex
	reqs     []sentRequest
	queue    []*armed
	zeroNext bool // the answer in flight is to be rewritten
	isDirect bool // the request in flight is the model's own
	recorded *oauth2.Token
	cbFail   bool
	notes    []string // notes from the source's goroutines, for the step's line

	// The application.
	login *oauth2.Token // its last login, given to New at a restart

	// What the model knows. liveRoot is the refresh token the live family
	// started from (at the login), "" when the application has none (after
	// SetToken(nil) or a token without one); strict is whether the source
	// must send no refresh token outside the live family (false after
	// SetToken(nil), whose meaning for the refresh token is open).
	liveRoot string
	strict   bool
	lost     map[string]bool // rotated refresh tokens whose answer was dropped
	rejected map[string]bool // refresh tokens rejected for good, sent by this source
	// pending: a Save may be pending (see update).
	pending       bool
	retryAt       time.Time // of the last RetryError seen
	retryAtIsSave bool      // that RetryError was for a Save
	history       []handed  // recent tokens handed out, newest last
	last          *handed   // the last token handed out
	lastValid     bool      // and the test has not invalidated it since
	rejectedSeen  bool      // the source answered ErrRefreshRejected since the last login or restart
	// reported401 is set once the test has reported a 401 (InvalidateToken):
	// a token fetched to replace a rejected one and rejected in turn makes
	// the source wait a back-off, with errTokenRejected, by design.
	reported401 bool

	storeFault      refreshtokentest.StoreFaults
	storeFaultSteps int
	cbFailSteps     int

	step     int
	line     strings.Builder // the current step's log line
	log      []string
	failures int
	cover    coverage // LeaseWaits is guarded by mu
}

func runModel(t *testing.T, seed uint64, steps int) {
	m := &model{
		t:        t,
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, 0x5eed)),
		clock:    refreshtokentest.NewClock(modelT0),
		mode:     storeMode(seed % 3),
		lost:     map[string]bool{},
		rejected: map[string]bool{},
	}
	m.life = []time.Duration{time.Hour, 5 * time.Minute, 30 * time.Second, 20 * time.Second}[m.rng.IntN(4)]
	m.reuse = []time.Duration{0, 10 * time.Minute}[m.rng.IntN(2)]
	m.srv = refreshtokentest.NewServer(refreshtokentest.Config{
		Clock:          m.clock.Now,
		Lifetime:       m.life,
		ReuseInterval:  m.reuse,
		OnTokenRequest: m.onTokenRequest,
	})
	defer m.srv.Close()
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	m.client = &http.Client{Transport: rewrite{m: m, base: base}}
	m.direct = &http.Client{Transport: base}
	m.store = refreshtokentest.NewMemoryStore(m.clock.Now, modelLease)
	m.shared = &leaseClock{MemoryStore: m.store, m: m}

	m.logf("config: %v, token lifetime %v, reuse interval %v", m.mode, m.life, m.reuse)
	root := m.srv.NewRefreshToken("offline_access")
	m.login = &oauth2.Token{RefreshToken: root}
	m.liveRoot, m.strict = root, true
	m.recorded = m.login
	m.newSource(m.login)
	m.endLine()
	defer func() {
		if m.ts != nil {
			m.ts.Close()
		}
	}()

	for m.step = 1; m.step <= steps; m.step++ {
		if !m.runStep() {
			return
		}
	}
	st := m.srv.Stats()
	m.mu.Lock()
	cover := m.cover
	m.mu.Unlock()
	t.Logf("seed %d: %d steps, %v, lifetime %v, reuse interval %v; %+v; server: %d requests, %d refreshes, %d tolerated reuses",
		seed, steps, m.mode, m.life, m.reuse, cover, st.TokenRequests, st.Refreshes, st.ReuseTolerated)
}

// newSource makes the application's source, from tok and the store.
func (m *model) newSource(tok *oauth2.Token) {
	opts := []Option{WithClock(m.clock.Now), WithJitter(0), WithRefreshTimeout(modelRefreshTimeout)}
	switch m.mode {
	case sharedStore:
		opts = append(opts, WithStore(m.shared))
	case plainStore:
		opts = append(opts, WithStore(plainStoreOf{m.store}))
	case callbackOnly:
		opts = append(opts, WithOnNewToken(m.onNewToken))
	}
	if tok != nil {
		t := *tok
		tok = &t
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, m.client)
	m.ts = New(ctx, m.srv.Config(), tok, opts...)
}

// onNewToken is the application's callback: it records the token, and
// then fails if told to.
func (m *model) onNewToken(_ context.Context, tok *oauth2.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recorded = tok
	if m.cbFail {
		return errCallback
	}
	return nil
}

// onTokenRequest is the server's hook: it notes the refresh token sent and
// which injected fault the request gets.
func (m *model) onTokenRequest(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	form, _ := url.ParseQuery(string(b))
	rt := form.Get("refresh_token")
	newest, _ := m.srv.Newest(rt)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.isDirect {
		return
	}
	req := sentRequest{rt: rt, at: m.clock.Now(), newestBefore: newest}
	// As the server's nextFault.
	for len(m.queue) > 0 {
		a := m.queue[0]
		if a.left == 0 {
			m.queue = m.queue[1:]
			continue
		}
		if a.left > 0 {
			a.left--
		}
		req.fault = a
		break
	}
	m.zeroNext = req.fault != nil && req.fault.zeroExpiresIn
	m.reqs = append(m.reqs, req)
}

// rewrite is the source's transport: it rewrites expires_in to 0 in the
// answer to a request that got the model's zeroExpiresIn fault.
type rewrite struct {
	m    *model
	base http.RoundTripper
}

func (rw rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := rw.base.RoundTrip(r)
	rw.m.mu.Lock()
	zero := rw.m.zeroNext
	rw.m.zeroNext = false
	rw.m.mu.Unlock()
	if err != nil || !zero || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var fields map[string]any
	if err == nil && json.Unmarshal(b, &fields) == nil && fields["access_token"] != nil {
		fields["expires_in"] = 0
		b, _ = json.Marshal(fields)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// resync makes the server's fault queue the model's again.
func (m *model) resync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.srv.Heal()
	var q []*armed
	for _, a := range m.queue {
		if a.left != 0 {
			q = append(q, a)
			m.srv.Inject(a.left, a.fault)
		}
	}
	m.queue = q
}

func (m *model) arm(a *armed) {
	m.mu.Lock()
	m.queue = append(m.queue, a)
	m.mu.Unlock()
	m.resync()
}

// loginDirect is a user's login that returns an access token with the
// refresh token: the model refreshes a new family itself, past any fault.
func (m *model) loginDirect() *oauth2.Token {
	root := m.srv.NewRefreshToken("offline_access")
	m.mu.Lock()
	m.isDirect = true
	m.mu.Unlock()
	m.srv.Heal()
	defer func() {
		m.mu.Lock()
		m.isDirect = false
		m.mu.Unlock()
		m.resync()
	}()
	conf := m.srv.Config()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {root}, "client_id": {conf.ClientID}, "client_secret": {conf.ClientSecret}}
	resp, err := m.direct.PostForm(conf.Endpoint.TokenURL, form)
	if err != nil {
		m.t.Fatalf("seed %d: the model's login: %v", m.seed, err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		m.t.Fatalf("seed %d: the model's login: %v %+v", m.seed, err, body)
	}
	return &oauth2.Token{AccessToken: body.AccessToken, TokenType: "Bearer", RefreshToken: body.RefreshToken,
		Expiry: m.clock.Now().Add(time.Duration(body.ExpiresIn) * time.Second), ExpiresIn: body.ExpiresIn}
}

// guard runs f, and ends the test if it does not return in time.
func (m *model) guard(what string, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(modelGuard):
		m.note("HUNG")
		m.endLine()
		m.report(fmt.Sprintf("%s did not return within %v (a hang)", what, modelGuard))
		m.t.FailNow()
	}
}

func (m *model) logf(format string, args ...any) {
	fmt.Fprintf(&m.line, format, args...)
}

func (m *model) note(format string, args ...any) {
	m.line.WriteString("; ")
	fmt.Fprintf(&m.line, format, args...)
}

// asyncNote is note for the source's goroutines.
func (m *model) asyncNote(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes = append(m.notes, fmt.Sprintf(format, args...))
}

func (m *model) endLine() {
	m.log = append(m.log, m.line.String())
	m.line.Reset()
}

// report prints a failure with the seed and the log so far.
func (m *model) report(msg string) {
	log := m.log
	omitted := 0
	n := *modelLogLines
	if m.failures > 1 {
		n = 5 // -model.keepgoing: the log was printed with the first failure
	}
	if n > 0 && len(log) > n {
		omitted, log = len(log)-n, log[len(log)-n:]
	}
	var b strings.Builder
	keepGoing := ""
	if *modelKeepGoing {
		keepGoing = " -model.keepgoing"
	}
	fmt.Fprintf(&b, "seed %d, step %d: %s\nreplay: go test -run TestModel -model.seed=%d -model.steps=%d%s -v .\nstep log", m.seed, m.step, msg, m.seed, m.step, keepGoing)
	if omitted > 0 {
		fmt.Fprintf(&b, " (%d earlier steps omitted, -model.log=0 for all)", omitted)
	}
	b.WriteString(":\n")
	for _, l := range log {
		b.WriteString("  " + l + "\n")
	}
	m.t.Error(b.String())
}

// short names a token in the log.
func short(s string) string {
	if s == "" {
		return `""`
	}
	if len(s) > 9 {
		return s[:9]
	}
	return s
}

func (m *model) at(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return "t+" + t.Sub(modelT0).String()
}
