// Package redisstore keeps the tokens of refreshtoken sources in Redis, so
// that several processes (replicas of a service) can share a refresh token
// without ever sending it twice.
//
// A [Store] holds one token under one key: make one per token identity (per
// user, per client) and pass it to [refreshtoken.WithStore]. It is a
// [refreshtoken.SharedStore]: around each refresh the source takes a lease
// lock in Redis (SET NX PX with a random owner), loads the token again, and
// uses it if another process has refreshed meanwhile; otherwise it
// refreshes and saves with a compare on the refresh token it started from,
// and the lock is released only by its owner (compare-and-delete in a Lua
// script). A process that dies holding the lock frees it when its lease
// ends.
//
// The token is a Redis hash with the fields access_token, token_type,
// refresh_token, expiry (RFC 3339), expires_in, id_token, scope,
// refresh_token_expiry, refresh_token_family_issued and dpop_jkt, the empty ones
// left out; the lock is a string under the key followed by
// ":lock", a random owner. The hash holds the tokens in the clear, unless
// the Store is wrapped by github.com/tokenfresh/refreshtoken/sealedstore,
// which encrypts them. Either way, whoever can write to Redis can sign
// users out or stall their refreshes: protect the Redis server as you
// would the refresh tokens (ACLs, TLS, no public port), and run it with persistence
// (appendonly yes): a Redis that restarts empty has lost the latest
// refresh tokens, and each process falls back on the one in its memory,
// which may be retired. Replication to replicas is asynchronous: a failover
// can lose the latest token and the lock, with the same result; run a
// single primary with persistence, or make failovers rare events that are
// followed by signing users in again.
//
// Make the client with ContextTimeoutEnabled set in its options: without
// it, go-redis does not apply the deadlines of the source's contexts to
// its commands, and a Redis that hangs holds a refresh (and the callers
// waiting for it) for the client's read timeout times its retries, instead
// of the source's refresh timeout.
package redisstore

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// DefaultLease is how long a lock is held when [WithLease] is not given:
// longer than refreshtoken's default refresh timeout (30 s), so that a
// refresh that runs up to its timeout ends within the lease, and short
// enough that a process that died holding the lock stops the others for
// less than refreshtoken's early refresh window (2 min).
const DefaultLease = 45 * time.Second

// Store is the token of one identity in Redis. It is safe for concurrent
// use by multiple goroutines and processes. An idle Store holds only its
// client and key: it runs no goroutine and opens no connection of its own.
type Store struct {
	rdb   redis.UniversalClient
	key   string
	lease time.Duration
}

var _ refreshtoken.SharedStore = (*Store)(nil)

// An Option configures a [Store].
type Option func(*Store)

// WithLease sets how long the refresh lock is held at most: a process that
// dies holding it stops the others' refreshes for that long. The default,
// also used for d <= 0, is [DefaultLease] (45 s). Make it longer than the
// source's refresh timeout ([refreshtoken.WithRefreshTimeout]), since the
// source ends its request to the token endpoint within three quarters of
// the lease, and a shorter lease cuts slow refreshes short; and shorter than
// twice that timeout, since a source waits that long for the lock before it
// gives up and backs off.
func WithLease(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.lease = d
		}
	}
}

// New returns the Store of the token under key, in the Redis that rdb
// talks to. The key names one token identity, such as
// "refreshtoken:<client ID>:<user ID>"; every process sharing that token
// uses the same key; to keep a token and its lock on one node of a Redis
// Cluster, put the identity in braces ("refreshtoken:{<user ID>}"). rdb is
// shared by all the Stores of a process and is the caller's to close; make
// it with ContextTimeoutEnabled (see the package documentation).
func New(rdb redis.UniversalClient, key string, opts ...Option) *Store {
	s := &Store{rdb: rdb, key: key, lease: DefaultLease}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// String names the key, and no secret.
func (s *Store) String() string { return fmt.Sprintf("redisstore.Store{key %q}", s.key) }

// GoString is String, so that %#v does not print the client's options,
// which may hold the Redis password.
func (s *Store) GoString() string { return s.String() }

// Load returns the stored token, or nil if there is none.
func (s *Store) Load(ctx context.Context) (*oauth2.Token, error) {
	h, err := s.rdb.HGetAll(ctx, s.key).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: loading %q: %w", s.key, err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	tok := &oauth2.Token{AccessToken: h["access_token"], TokenType: h["token_type"], RefreshToken: h["refresh_token"]}
	if v, ok := h["expiry"]; ok {
		if tok.Expiry, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, fmt.Errorf("redisstore: %q is not a token: bad expiry", s.key)
		}
	}
	if v, ok := h["expires_in"]; ok {
		if tok.ExpiresIn, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("redisstore: %q is not a token: bad expires_in", s.key)
		}
	}
	if tok.AccessToken == "" && tok.RefreshToken == "" {
		return nil, fmt.Errorf("redisstore: %q is not a token: it has neither an access token nor a refresh token", s.key)
	}
	extra := map[string]any{}
	for _, k := range keptExtras {
		if v := h[k]; v != "" {
			extra[k] = v
		}
	}
	return tok.WithExtra(extra), nil
}

// keptExtras are the string extras of a token that the hash keeps: two
// response fields, and what the source knows of the refresh token's
// lifetime and of the DPoP key it is bound to (the keys
// refreshtoken.ExtraRefreshTokenExpiry, ExtraRefreshTokenFamily and
// ExtraDPoPThumbprint, spelled out so that this module builds with a core
// that predates them).
var keptExtras = []string{"id_token", "scope", "refresh_token_expiry", "refresh_token_family_issued", "dpop_jkt"}

// saveScript replaces the hash at KEYS[1] with the field-value pairs from
// ARGV[4] on. If ARGV[1] is "1", it does so only if the stored
// refresh_token is ARGV[2] (the previous one), or ARGV[3] (the new one: a
// retry of a save that landed, which go-redis makes after a lost reply),
// or there is none, and returns 0 otherwise.
var saveScript = redis.NewScript(`
if ARGV[1] == "1" then
	local cur = redis.call("HGET", KEYS[1], "refresh_token")
	if cur and cur ~= ARGV[2] and cur ~= ARGV[3] then
		return 0
	end
end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], unpack(ARGV, 4))
return 1
`)

// Save stores tok, replacing what is stored.
func (s *Store) Save(ctx context.Context, tok *oauth2.Token) error {
	_, err := s.save(ctx, tok, false, "")
	return err
}

// SaveIfCurrent stores tok if the stored refresh token is previous, or if
// nothing is stored, in one step; it reports whether it stored tok. A
// stored refresh token equal to tok's counts as current too: the store
// already holds tok (a retried save).
func (s *Store) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	return s.save(ctx, tok, true, previous)
}

func (s *Store) save(ctx context.Context, tok *oauth2.Token, compare bool, previous string) (bool, error) {
	if tok.AccessToken == "" && tok.RefreshToken == "" {
		return false, errors.New("redisstore: refusing to save a token with neither an access token nor a refresh token")
	}
	args := []any{"0", previous, tok.RefreshToken}
	if compare {
		args[0] = "1"
	}
	add := func(field, value string) {
		if value != "" {
			args = append(args, field, value)
		}
	}
	add("access_token", tok.AccessToken)
	add("token_type", tok.TokenType)
	add("refresh_token", tok.RefreshToken)
	if !tok.Expiry.IsZero() {
		add("expiry", tok.Expiry.UTC().Format(time.RFC3339Nano))
	}
	if tok.ExpiresIn > 0 {
		add("expires_in", strconv.FormatInt(tok.ExpiresIn, 10))
	}
	for _, k := range keptExtras {
		v, _ := tok.Extra(k).(string)
		add(k, v)
	}
	n, err := saveScript.Run(ctx, s.rdb, []string{s.key}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("redisstore: saving %q: %w", s.key, err)
	}
	return n == 1, nil
}

// lockScript sets the lock KEYS[1] to the owner ARGV[1] for ARGV[2]
// milliseconds if it is free, or already this owner's (a retry, which
// go-redis makes after a lost reply). It returns {1, 0} if it took the
// lock, and otherwise {0, the lock's time to live in milliseconds}, or
// {0, -1} or {0, -2} if it has no expiry or has just gone.
var lockScript = redis.NewScript(`
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
	return {1, 0}
end
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
	return {1, 0}
end
return {0, redis.call("PTTL", KEYS[1])}
`)

// unlockScript deletes the lock KEYS[1] if it still holds the owner
// ARGV[1]: once a lease has ended, the lock may be another's.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// Poll intervals while another process holds the lock: a refresh usually
// takes tens of milliseconds, so the first polls come soon, and the
// interval doubles so that a long refresh costs few commands. A poll never
// comes later than the end of the holder's lease, so that a lock held by a
// process that died is taken as soon as it is free.
const (
	pollMin = 10 * time.Millisecond
	pollMax = 500 * time.Millisecond
)

// Lock takes the refresh lock, polling while another holder has it, until
// ctx ends. The lease ends at the returned time at the latest: it is
// measured from before the lock was asked for, so that it never ends later
// by the local clock than in Redis. unlock deletes the lock only if it is
// still this holder's.
func (s *Store) Lock(ctx context.Context) (expires time.Time, unlock func(context.Context) error, err error) {
	lockKey := s.key + ":lock"
	owner := crand.Text()
	wait := pollMin
	for held := false; ; held = true {
		start := time.Now()
		r, err := lockScript.Run(ctx, s.rdb, []string{lockKey}, owner, s.lease.Milliseconds()).Int64Slice()
		if err != nil && held && ctx.Err() != nil {
			// The deadline ended the wait during a poll, which may have
			// taken the lock all the same: release it, or the others wait
			// for its lease for nothing.
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			unlockScript.Run(cleanup, s.rdb, []string{lockKey}, owner)
			cancel()
			return time.Time{}, nil, fmt.Errorf("redisstore: %q is locked by another process: %w", s.key, ctx.Err())
		}
		if err != nil {
			return time.Time{}, nil, fmt.Errorf("redisstore: locking %q: %w", s.key, err)
		}
		if len(r) != 2 {
			return time.Time{}, nil, fmt.Errorf("redisstore: locking %q: unexpected answer from Redis", s.key)
		}
		if r[0] == 1 {
			unlock := func(ctx context.Context) error {
				if err := unlockScript.Run(ctx, s.rdb, []string{lockKey}, owner).Err(); err != nil {
					return fmt.Errorf("redisstore: unlocking %q: %w", s.key, err)
				}
				return nil
			}
			return start.Add(s.lease), unlock, nil
		}
		// Half the interval plus a random half, so that waiting processes
		// do not poll in step; no later than the lease's end.
		d := wait/2 + rand.N(wait/2+1)
		if ttl := time.Duration(r[1]) * time.Millisecond; r[1] >= 0 && ttl < d {
			d = ttl + time.Millisecond
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, nil, fmt.Errorf("redisstore: %q is locked by another process: %w", s.key, ctx.Err())
		}
		wait = min(2*wait, pollMax)
	}
}
