package refreshtoken

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// One refresh token, several audiences: the sources of Audience share the
// owner of their refresh token, and with it one lock for all their
// refreshes, so that each rotation is handed to the next refresh,
// whichever audience it is for.

// owner is the one holder of a refresh token. The source made by New (the
// group's primary) embeds it; the sources of its Audience point to it.
type owner struct {
	// mu serialises the refreshes, SetToken and Flush of every source of
	// the group, and guards rt, primaryRead and what each source says mu
	// guards. singleflight alone runs one refresh at a time per source,
	// but SetToken and Flush do not go through it, and siblings have a
	// singleflight each.
	mu sync.Mutex
	// rt is the refresh token the grant sends. Only a refresh (a
	// rotation, a load from the store) and SetToken write it.
	rt string
	// primaryRead reports that the primary has read the store itself (or
	// SetToken made the store's token older): a sibling that read it
	// first took only its refresh token, not the primary's access token.
	primaryRead bool
	// group is nil until the first call to Audience.
	group atomic.Pointer[group]
	// life is what is known of rt's lifetime (rtexpiry.go), nil if its
	// expiry is not; written with mu held, read without.
	life atomic.Pointer[rtLife]
	// bound is the JWK thumbprint of the DPoP key rt is bound to
	// (dpopbind.go), "" if none is known; written with mu held, with rt.
	bound string
}

// group is the sources that share an owner.
type group struct {
	primary *TokenSource
	mu      sync.Mutex // guards members; taken after owner.mu, never before
	members map[string]*TokenSource
}

// Audience returns a source that gets access tokens for audience, with
// scopes, from s's refresh token: Auth0's multi-resource refresh tokens,
// where the refresh request's audience and scope parameters choose the API
// the access token is for. audience "" keeps the audience of s's requests
// (set with [WithEndpointParams], if any); no scopes sends no scope
// parameter (the scopes originally granted), whatever conf.Scopes of [New]
// held. Scopes are sent sorted. The other options and parameters are s's.
//
// The sources of one refresh token form a group, whose first is the
// source made by New (the primary): one refresh token, owned by the group;
// one cached access token per audience and scope set, each with its own
// early refresh, single flight, failure back-off, [Transport] and
// Invalidate. The refreshes of the group run one at a time, each sending
// the refresh token the one before it got back, so that with rotation no
// refresh token is ever sent twice. Audience returns the same source for
// the same audience and scope set (in any order), s itself for s's own,
// and may be called on any source of the group, from any goroutine; it
// sends nothing, but a call that makes a new source waits for a refresh of
// the group in flight. Sources of a group are not freed before the group.
//
// An answer invalid_grant rejects the refresh token for the whole group:
// each source serves its access token while it is valid, and then returns
// [ErrRefreshRejected]. Other rejections (access_denied, invalid_scope)
// concern the source that got them. [TokenSource.SetToken] on any source
// gives the group its new refresh token and ends every rejection; the
// access token it carries is that source's own.
//
// A [Store] keeps one token for the group: the latest refresh token, saved
// at every rotation whichever source rotated it, with the primary's access
// token (none if it has none), so that a restarted process never hands out
// an access token for the wrong audience: the primary reuses its stored
// access token, the others refresh once. The [WithOnNewToken] callback
// gets the token the store gets. With a [SharedStore], every source of the
// group takes the fleet's lock for its refresh. Close closes one source;
// Flush and Close of any source save the group's pending token. The
// callback and the [Observer] run under the group's lock: what they may
// not do with their source, they may not do with any source of the group.
//
// Audience of a source made by [Cache], which has no refresh token of its
// own, returns a source whose every refresh fails with an error that says
// so.
func (s *TokenSource) Audience(audience string, scopes ...string) *TokenSource {
	own := s.own
	g := own.group.Load()
	if g == nil {
		// s is the primary: a sibling exists only in a group.
		own.group.CompareAndSwap(nil, &group{primary: s, members: map[string]*TokenSource{s.key(): s}})
		g = own.group.Load()
	}
	scopes = slices.Compact(slices.Sorted(slices.Values(scopes)))
	if audience == "" && g.primary.grant != nil {
		audience = g.primary.grant.params.Get("audience")
	}
	key := audienceKey(audience, scopes)
	if m := g.member(key); m != nil {
		return m
	}
	// A new source learns which refresh token the group's endpoint has
	// rejected, which a refresh in flight may be finding out.
	own.mu.Lock()
	defer own.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[key]; m != nil {
		return m
	}
	m := g.primary.sibling(audience, scopes)
	g.members[key] = m
	return m
}

// member returns the source for key, nil if there is none yet.
func (g *group) member(key string) *TokenSource {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.members[key]
}

// audienceKey identifies an audience and a sorted scope set.
func audienceKey(audience string, scopes []string) string {
	return audience + "\n" + strings.Join(scopes, " ")
}

// key is the audienceKey of s's requests.
func (s *TokenSource) key() string {
	if s.grant == nil {
		return audienceKey("", nil)
	}
	return audienceKey(s.grant.params.Get("audience"), slices.Compact(slices.Sorted(slices.Values(s.grant.scopes))))
}

// errNoGrant is the configuration error of Audience on a Cache source.
var errNoGrant = errors.New("refreshtoken: Audience needs a source made by New: a source made by Cache has no refresh token of its own")

// sibling returns a source of s's group (s is its primary) for audience
// and scopes: a copy of s's configuration with an empty cache, whose
// requests carry audience and scopes. Called with own.mu held.
func (s *TokenSource) sibling(audience string, scopes []string) *TokenSource {
	g := &grant{err: unsentError{errNoGrant}}
	if s.grant != nil {
		c := *s.grant
		g = &c
		g.scopes = scopes
		if audience != "" {
			g.params = make(url.Values, len(s.grant.params)+1)
			for k, vs := range s.grant.params {
				g.params[k] = vs
			}
			g.params.Set("audience", audience)
		}
	}
	c := *s.config
	c.grant, c.src = g, nil // a Cache source's inner source has no audience
	// Its flightKey is the primary's: its keep-alive must not join theirs.
	c.keepAlives = new(singleflight.Group)
	g.now = c.now
	m := new(TokenSource)
	m.init(&c, nil, new(singleflight.Group), refreshKey)
	m.own, m.rejected, m.store = s.own, s.rejected, s.store
	if s.store != nil {
		// From now on a sibling's Save may need the stored access token.
		s.store.keepStored = true
	}
	return m
}

// primary reports whether s is its group's primary (or has no group):
// the source whose access token the store keeps.
func (s *TokenSource) primary() bool { return s.own == &s.owned }

// groupToken returns what the group's store and callback get for tok, a
// token that s fetched: tok itself from the primary; from another source,
// tok's refresh token with the primary's access token, so that no access
// token is stored under the wrong audience. That access token is the one
// the primary holds or the one the store holds (another process's
// primary, or this one's before it read the store), whichever expires
// later, but not one the primary dropped; none if neither has one. It
// carries what is known of the refresh token's lifetime (stamp).
// Called with own.mu held.
func (s *TokenSource) groupToken(tok *oauth2.Token) *oauth2.Token {
	if s.primary() {
		return tok
	}
	t := &oauth2.Token{RefreshToken: tok.RefreshToken}
	e := s.own.group.Load().primary.cur.Load()
	best := e.tok
	if s.store != nil {
		if st := s.store.stored; st != nil && st.AccessToken != "" && st.AccessToken != e.drops().access &&
			(best == nil || laterExpiry(st.Expiry, best.Expiry)) {
			best = st
		}
	}
	if best != nil {
		t.AccessToken, t.TokenType, t.Expiry, t.ExpiresIn = best.AccessToken, best.TokenType, best.Expiry, best.ExpiresIn
		extra := map[string]any{}
		for _, k := range []string{"id_token", "scope"} {
			if v, ok := best.Extra(k).(string); ok {
				extra[k] = v
			}
		}
		t = t.WithExtra(extra)
	}
	return s.own.stamp(t, s.grant.life().absolute > 0)
}

// siblings calls f for every other source of s's group. Called with
// own.mu held.
func (s *TokenSource) siblings(f func(*TokenSource)) {
	g := s.own.group.Load()
	if g == nil {
		return
	}
	g.mu.Lock()
	members := make([]*TokenSource, 0, len(g.members))
	for _, m := range g.members {
		if m != s {
			members = append(members, m)
		}
	}
	g.mu.Unlock()
	for _, m := range members {
		f(m)
	}
}

// rejectSiblings tells the other sources of the group that the endpoint
// answered invalid_grant for the refresh token rt, or that rt expired,
// which concerns the refresh token and not the audience: none of them sends rt again, and
// each serves its token while it is valid and then returns err. Other
// rejections are the source's own. Called with own.mu held.
func (s *TokenSource) rejectSiblings(rt string, err error) {
	if errorCode(err) != "invalid_grant" && !errors.Is(err, ErrRefreshTokenExpired) {
		return
	}
	s.siblings(func(m *TokenSource) {
		m.rejected = rt
		m.setFailure(func(*failure) *failure { return &failure{err: err, permanent: true} })
	})
}

// recoverSiblings ends the rejections of the other sources of the group,
// after SetToken gave it a new refresh token. Called with own.mu held.
func (s *TokenSource) recoverSiblings() {
	s.siblings(func(m *TokenSource) {
		m.policy = policy{}
		m.setFailure(func(f *failure) *failure {
			if f != nil && f.permanent {
				return nil
			}
			return f
		})
	})
}

// setFailure replaces the failure of s's entry with next(failure), with a
// compare-and-swap, as a drop does: s may be handing its token out.
// Called with own.mu held, so no refresh of s publishes meanwhile.
func (s *TokenSource) setFailure(next func(*failure) *failure) {
	for {
		cur := s.cur.Load()
		v := cur.view
		if v.fail = next(v.fail); v.fail.same(cur.fail) {
			return
		}
		if s.cur.CompareAndSwap(cur, newEntry(v)) {
			return
		}
	}
}

// storeDue reports whether the round must read the store before anything
// else: as storeSync.due, and for the primary until it has read the store
// itself.
func (r *round) storeDue() bool {
	return r.s.store.due() || (r.s.primary() && !r.s.own.primaryRead)
}

// settled handles a round that finds no Save pending: a failed Save of
// its own token that another source of the group has since saved (in its
// refresh, or Flush) is no longer a failure. It reports whether a refresh
// is still needed.
func (r *round) settled() bool {
	if !r.v.fail.saveOnly() {
		return true
	}
	r.v.fail, r.changed = nil, true
	return !r.done()
}
