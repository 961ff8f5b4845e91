package refreshtoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// A Pool hands out access tokens per key (a user, a tenant), each from a
// source of its own that the Pool creates on the key's first use from the
// key's [Store] and evicts once idle: the way to hold the refresh tokens of
// many users. Every source of a Pool uses the same *oauth2.Config and the
// same options as [New]'s, which they share.
//
// A Pool never hands out a key's source itself, only what resolves the key
// at each call ([Pool.Token], [Pool.TokenSource], [Pool.Transport],
// [Pool.Client]): a source held by the application beside a newer one that
// the Pool made after evicting it would send the same refresh token, and
// with rotation that second use gets the whole token family revoked. A
// call pins the source for its duration. A source is evicted only when no
// call is inside it, no refresh is in flight and no token of its waits to
// be saved (a failed Save is retried by its own next refresh, Flush or
// Close). An eviction does no I/O and holds the Pool's lock: the key's next
// call makes a new source, which loads the key's store afresh, and so
// starts from the latest rotation. A key evicted while its access token is
// fresh comes back with no request.
//
// Eviction is checked on the Pool's calls, not by a goroutine or a timer:
// beyond [WithPoolSize] sources, the least recently used are evicted, and
// with [WithPoolIdle], those unused for that long. The bound is not a hard
// limit: sources in use, refreshing, or holding an unsaved token stay.
//
// A Pool is safe for concurrent use by multiple goroutines: however many
// ask for a key at once, it makes one source for it, which makes one
// request at a time. The zero value is not usable; make one with
// [NewPool].
type Pool struct {
	conf  *config // shared by every source
	store func(key string) Store
	err   error // a configuration error, returned by every call
	size  int
	idle  time.Duration
	epoch time.Time // member.used counts from it, by the pool's clock

	// mu guards keys, closed, the list and the pool fields of every
	// member (prev, next, used), and is never held across a call into a
	// store or a wait: under it, an eviction only tries a source's lock
	// (TryLock) and closes the source.
	mu     sync.Mutex
	keys   map[string]*member
	root   member // of the list of members, most recently used first
	closed bool
	// rejected keeps, for each key evicted after the endpoint rejected its
	// refresh token for good, that refresh token: the key's next source
	// does not send it again, though the store still holds it. SetToken
	// of the key drops it.
	rejected map[string]string
	// group runs the refreshes of every member, each under its key.
	group singleflight.Group
}

// member is a key's source and its place in the Pool. A member is one
// allocation: an idle key costs its source and little more. Its key is
// its source's flightKey.
type member struct {
	TokenSource
	prev, next *member // the list of members, most recently used first
	used       time.Duration
	// users counts the calls inside the source. It is incremented only
	// with the Pool's mu held, so that an eviction, which reads it under
	// mu, cannot race with a call coming in; it is decremented without.
	users atomic.Int32
}

// scanLimit bounds how many members a call looks at for eviction: the
// cost of a call stays constant however many members are in use or busy.
const scanLimit = 8

// NewPool returns a Pool whose key's source gets its token from store(key)
// and refreshes it with the refresh grant of conf, as [New] does: a
// source for each key, with opts. store is called once per source the Pool
// makes for the key (again after an eviction), outside the Pool's lock,
// and must return a Store of that key's alone: filestore.New(path),
// redisstore.New(rdb, prefix+key) or a [SharedStore] if processes share
// it. A nil store, or a nil Store returned for a key, is an error of every
// call for it: a source without a store would lose its token at eviction.
// The key is used as it is: if it comes from outside, a store function
// that builds a file path or a Redis key from it must make it safe.
//
// [WithStore] is ignored. A [WithOnNewToken] callback and a [WithObserver]
// observer are shared by every key and are not told which key a token or
// event is for; prefer the Store for persisting tokens. ctx supplies values
// only, as in New.
func NewPool(ctx context.Context, conf *oauth2.Config, store func(key string) Store, opts ...Option) *Pool {
	o := resolve(opts)
	p := &Pool{conf: newGrantConfig(ctx, conf, o), store: store, size: o.poolSize, idle: o.poolIdle, keys: make(map[string]*member)}
	if store == nil {
		p.err = errors.New("refreshtoken: NewPool was given a nil store function")
	}
	p.epoch = p.conf.now()
	p.root.prev, p.root.next = &p.root, &p.root
	return p
}

// Token returns a valid access token for key, as [TokenSource.TokenContext]
// does; the first call for a key loads its store. A key whose store holds
// no token gets an error that matches [ErrNoToken] until
// [Pool.SetToken] gives it one. If ctx ends while the call waits for the
// key's refresh, Token returns an error wrapping ctx.Err().
// The returned Token is the caller's own copy.
func (p *Pool) Token(ctx context.Context, key string) (*oauth2.Token, error) {
	m, err := p.acquire(key)
	if err != nil {
		return nil, err
	}
	defer m.release()
	return m.TokenContext(ctx)
}

// SetToken gives key a new token, as [TokenSource.SetToken] does: after
// the user signed in, or in again after a rejection. tok is saved in the
// key's store, and SetToken returns the error of that Save (tok is in use
// all the same, and the Pool does not evict the key before it is saved).
func (p *Pool) SetToken(ctx context.Context, key string, tok *oauth2.Token) error {
	m, err := p.acquire(key)
	if err != nil {
		return err
	}
	defer m.release()
	return m.TokenSource.SetToken(tok)
}

// Revoke signs key's user out, as [TokenSource.Revoke] does: the refresh
// token is revoked at the endpoint set with [WithRevocationURL], and
// replaced in the key's store by the sign-out, so that the key's calls
// (here, and in every process sharing the store) return [ErrRevoked]
// until [Pool.SetToken]. If the revocation fails, the token is kept and
// the error returned; [Pool.Forget] drops it without telling the server.
func (p *Pool) Revoke(ctx context.Context, key string) error {
	m, err := p.acquire(key)
	if err != nil {
		return err
	}
	defer m.release()
	return m.TokenSource.Revoke(ctx)
}

// Forget signs key's user out without telling the server, as
// [TokenSource.Forget] does.
func (p *Pool) Forget(ctx context.Context, key string) error {
	m, err := p.acquire(key)
	if err != nil {
		return err
	}
	defer m.release()
	return m.TokenSource.Forget(ctx)
}

// KeepAlive keeps key's refresh token alive, as [TokenSource.KeepAlive]
// does: if a refresh is due only so that the refresh token does not reach
// the end of its inactivity lifetime ([TokenSource.KeepAliveAt]), it
// refreshes now, though the access token may be fresh; otherwise it sends
// nothing. The Pool never does this by itself, and cannot list its keys'
// stores: an application that wants its dormant users kept signed in calls
// KeepAlive for each of them, say daily. A key the Pool does not hold is
// made from its store first (with no request while its access token is
// fresh); it returns the error of that, or of the refresh.
func (p *Pool) KeepAlive(ctx context.Context, key string) error {
	m, err := p.acquire(key)
	if err != nil {
		return err
	}
	defer m.release()
	// The token in the store, and with it what is known of the refresh
	// token's lifetime, is read at the source's first refresh.
	if _, err := m.TokenContext(ctx); err != nil {
		return err
	}
	return m.TokenSource.KeepAlive(ctx)
}

// TokenSource returns an [oauth2.TokenSource] for key that resolves it in
// the Pool at each call to Token: it may be kept for as long as the Pool,
// whatever the Pool evicts meanwhile.
func (p *Pool) TokenSource(key string) oauth2.TokenSource {
	return poolSource{p, key}
}

type poolSource struct {
	p   *Pool
	key string
}

func (ps poolSource) Token() (*oauth2.Token, error) {
	return ps.p.Token(context.Background(), ps.key)
}

// Transport returns an [http.RoundTripper] that authorizes each request
// with a token for key, as [Transport] does (with its recovery from a 401),
// resolving the key in the Pool at each request. base sends the requests;
// nil means [http.DefaultTransport].
func (p *Pool) Transport(key string, base http.RoundTripper) http.RoundTripper {
	return &poolTransport{p: p, key: key, base: base}
}

// Client returns an HTTP client that authorizes its requests with tokens
// for key, through [Pool.Transport]. As with [NewClient], the base
// transport and other client settings come from the *http.Client in ctx
// under [oauth2.HTTPClient], if there is one.
func (p *Pool) Client(ctx context.Context, key string) *http.Client {
	hc := http.DefaultClient
	if c, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		hc = c
	}
	return &http.Client{
		Transport:     p.Transport(key, hc.Transport),
		CheckRedirect: hc.CheckRedirect,
		Jar:           hc.Jar,
		Timeout:       hc.Timeout,
	}
}

type poolTransport struct {
	p    *Pool
	key  string
	base http.RoundTripper
}

func (t *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	m, err := t.p.acquire(t.key)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	defer m.release()
	tr := Transport{Source: &m.TokenSource, Base: t.base}
	return tr.RoundTrip(req)
}

// Len returns how many sources the Pool holds.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// Close closes every source of the Pool, as [TokenSource.Close] does:
// refreshes in flight are waited for, and tokens whose Save failed are
// saved once more. It returns the errors of those Saves, joined; the
// Pool's calls then return [ErrClosed]. Close may be called more than once.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	ms := make([]*member, 0, len(p.keys))
	for _, m := range p.keys {
		ms = append(ms, m)
	}
	p.mu.Unlock()
	var errs []error
	for _, m := range ms {
		if err := m.Close(); err != nil {
			errs = append(errs, fmt.Errorf("refreshtoken: closing a Pool's source: %w", err))
		}
	}
	return errors.Join(errs...)
}

// acquire returns key's member, pinned: the caller releases it. It makes
// the member if there is none, and evicts the members that are due.
func (p *Pool) acquire(key string) (*member, error) {
	if p.err != nil {
		return nil, p.err
	}
	var st Store // made for key outside mu, if needed
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		m := p.keys[key]
		switch {
		case m == nil && st == nil:
			p.mu.Unlock()
			if st = p.store(key); st == nil {
				return nil, errors.New("refreshtoken: the Pool's store function returned a nil Store")
			}
			continue // another call may have made the member meanwhile
		case m == nil:
			m = new(member)
			m.init(p.conf, st, &p.group, key)
			if rt := p.rejected[key]; rt != "" {
				// A store that holds it still is not read as a new
				// token: the refresh fails as rejected, with no request.
				m.rejected, m.own.rt = rt, rt
			}
			p.keys[key] = m
			p.link(m)
		}
		m.users.Add(1)
		now := p.conf.now()
		p.touch(m, now)
		p.evictDue(now)
		p.mu.Unlock()
		return m, nil
	}
}

// release unpins m.
func (m *member) release() { m.users.Add(-1) }

// link puts m first in the list. Called with mu held.
func (p *Pool) link(m *member) {
	m.prev, m.next = &p.root, p.root.next
	m.prev.next, m.next.prev = m, m
}

// unlink takes m out of the list. Called with mu held.
func (p *Pool) unlink(m *member) {
	m.prev.next, m.next.prev = m.next, m.prev
	m.prev, m.next = nil, nil
}

// touch records a use of m at now. Called with mu held.
func (p *Pool) touch(m *member, now time.Time) {
	m.used = now.Sub(p.epoch)
	p.unlink(m)
	p.link(m)
}

// evictDue evicts the members due at now, from the least recently used,
// looking at scanLimit members at most. Called with mu held.
func (p *Pool) evictDue(now time.Time) {
	m := p.root.prev
	for range scanLimit {
		if m == &p.root {
			break
		}
		over := p.size > 0 && len(p.keys) > p.size
		idle := p.idle > 0 && now.Sub(p.epoch)-m.used >= p.idle
		if !over && !idle {
			break // the members before m were used later still
		}
		prev := m.prev
		if m.users.Load() == 0 && m.idle() {
			p.evict(m)
		}
		m = prev
	}
}

// idle reports whether s may be evicted, and if so returns with own.mu
// held, so that no refresh can run until retire: no refresh runs, and no
// token waits to be saved. A background refresh that a call started and
// that has yet to take own.mu finds s closed, and ends with nothing sent:
// no caller waits for it (no call is inside s), and the source that
// replaces s refreshes. A token whose Save failed is saved by the source's
// own next refresh, Flush or Close, not by an eviction on another key's
// call, which would make that call wait for a store that may hang.
func (s *TokenSource) idle() bool {
	if !s.own.mu.TryLock() {
		return false
	}
	if s.store != nil && s.store.pending != nil {
		s.own.mu.Unlock()
		return false
	}
	return true
}

// evict retires m's source and removes m. Called with mu held, and with
// m's own.mu held by idle.
func (p *Pool) evict(m *member) {
	if m.rejected != "" && m.cur.Load().failed().permanent {
		if p.rejected == nil {
			p.rejected = make(map[string]string)
		}
		p.rejected[m.flightKey] = m.rejected
	} else {
		delete(p.rejected, m.flightKey) // SetToken ended the rejection
	}
	m.retire()
	delete(p.keys, m.flightKey)
	p.unlink(m)
	// The key's next source must not join a refresh of this one still
	// registered under the key; that refresh may in turn forget the next
	// source's, which costs at most one more flight.
	p.group.Forget(m.flightKey)
	p.conf.keepAlives.Forget(m.flightKey)
}

// retire closes s for an eviction. Called with own.mu held (see idle),
// which it releases: no refresh can have run meanwhile, and no token
// waits to be saved.
func (s *TokenSource) retire() {
	defer s.own.mu.Unlock()
	s.closed.Store(true)
	s.cur.Store(&entry{})
}
