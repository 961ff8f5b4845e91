// Package pgstore keeps the tokens of refreshtoken sources in PostgreSQL,
// so that several processes (replicas of a service) can share a refresh
// token without ever sending it twice.
//
// A [Store] holds one token under one key: make one per token identity (per
// user, per client) and pass it to [refreshtoken.WithStore]. It is a
// [refreshtoken.SharedStore]: around each refresh the source takes a lease
// on the token's row (the columns lock_owner, a random value, and
// lock_until, set from the server's clock), loads the token again, and uses
// it if another process has refreshed meanwhile; otherwise it refreshes and
// saves with a compare on the SHA-256 of the refresh token it started
// from, and the lease is released only by its owner. A process that dies
// holding the lease frees it when the lease ends; one paused past its
// lease cannot save over the newer token another process saved.
//
// It is built on pgx rather than database/sql: pgx is the PostgreSQL
// driver most used in Go (lib/pq, the other, is in maintenance mode and
// points to it), and its own interface lets each statement choose how it
// is sent: here one round trip each, with the extended protocol and no
// named prepared statement, which also works behind PgBouncer in
// transaction mode; and lets a pool cancel a statement at the server when
// its context ends.
//
// The limits of the protocol (a process killed between the server's
// rotation and its save, or paused past its lease) are those of every
// shared store, in docs/stores.md of the repository.
//
// # Set-up
//
// Create the table once, at deployment, with [Schema] (it is idempotent:
// CREATE TABLE IF NOT EXISTS), and give the role of the service only what
// the store uses:
//
//	GRANT SELECT, INSERT, UPDATE ON refreshtoken_tokens TO app;
//
// The table holds secrets (the refresh tokens, in the clear, unless the
// Store is wrapped by github.com/tokenfresh/refreshtoken/sealedstore, which
// encrypts them): protect it as you would them. Connect with TLS that checks the server's name
// (sslmode=verify-full and sslrootcert in the connection string), keep
// the table out of logical replication to places that should not hold
// tokens, and keep its backups as secret as the tokens. Statement logging
// (log_statement, log_min_duration_statement) writes each statement's
// parameters, the tokens, to the server's log: where it is on, set
// log_parameter_max_length = 0 for the role. Add no constraint to the
// table: the server's error for a violated one quotes the row in its log. A token lost by
// the database is worse than a slow database: each process then falls back
// on the token in its memory, which may be retired. Keep synchronous_commit
// on (the default), and with a standby, make the commit wait for it
// (synchronous_standby_names) or accept that a failover can lose the last
// rotation, which locks the user out with Auth0's reuse detection until
// they sign in again.
//
// The pool is the caller's, shared by all the Stores of a process and
// closed by the caller; a Store opens nothing of its own. Size it
// (MaxConns) for the statements in flight: each takes a connection for
// its one round trip, and one that waits for a connection spends the
// source's refresh timeout waiting; pgxpool's default is 4 connections
// (or one per CPU), fewer than a busy Pool's refreshes. Each operation
// ends when its context does, with an error that wraps the context's. By
// default pgx then closes the connection and leaves the statement to the
// server, which may still run it later (once a row lock it waits for is
// released, say): harmless for a compare-and-save or a lease, but a plain
// Save that lands late can replace a newer token. Make the pool with
// pgconn.CancelRequestContextWatcherHandler, as the example does, so that
// the server cancels the statement too.
package pgstore

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// Schema creates the table of the tokens, refreshtoken_tokens, if it does
// not exist: one row per key, with the token's fields (NULL when empty),
// the SHA-256 of its refresh token, on which SaveIfCurrent compares, and
// the lease. Run it once with pool.Exec, or copy it into your migrations.
// The columns have no constraint besides the key, so that no error of the
// server quotes a row (and the tokens in it).
const Schema = `CREATE TABLE IF NOT EXISTS refreshtoken_tokens (
	key text PRIMARY KEY,
	access_token text,
	token_type text,
	refresh_token text,
	refresh_token_hash bytea,
	expiry timestamptz,
	expires_in bigint,
	id_token text,
	scope text,
	refresh_token_expiry text,
	refresh_token_family_issued text,
	dpop_jkt text,
	lock_owner text,
	lock_until timestamptz
)`

// DefaultLease is how long a lock is held when [WithLease] is not given:
// longer than refreshtoken's default refresh timeout (30 s), so that a
// refresh that runs up to its timeout ends within the lease, and short
// enough that a process that died holding the lock stops the others for
// less than refreshtoken's early refresh window (2 min).
const DefaultLease = 45 * time.Second

// maxToken bounds the bytes of a token's fields, saved or loaded: real
// tokens are a few KiB, and a row of many megabytes was not written by a
// Store. Yet it is above what a source can be given (it reads at most
// 1 MiB of a token endpoint's answer) and what sealedstore seals (up to
// 4 MiB), so that no rotated token is refused here.
const maxToken = 5 << 20

// Store is the token of one identity in PostgreSQL. It is safe for
// concurrent use by multiple goroutines and processes. An idle Store holds
// only its pool and key: it runs no goroutine and opens no connection of
// its own.
type Store struct {
	pool  *pgxpool.Pool
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
// gives up and backs off. The lease is counted in whole milliseconds,
// rounded down (at least 1 ms).
func WithLease(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			// Whole milliseconds, as the server counts it: the lease Lock
			// returns must not end later than the server's.
			s.lease = max(d.Truncate(time.Millisecond), time.Millisecond)
		}
	}
}

// New returns the Store of the token under key, in the table of [Schema]
// in the database that pool connects to. The key names one token
// identity, such as "<client ID>:<user ID>"; every process sharing that
// token uses the same key. pool is the caller's to close.
func New(pool *pgxpool.Pool, key string, opts ...Option) *Store {
	s := &Store{pool: pool, key: key, lease: DefaultLease}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// String names the key, and no secret.
func (s *Store) String() string { return fmt.Sprintf("pgstore.Store{key %q}", s.key) }

// GoString is String, so that %#v does not print the pool's
// configuration, whose connection string may hold a password.
func (s *Store) GoString() string { return s.String() }

// run is the mode of every statement: the extended protocol without a
// named prepared statement, so one round trip each, whatever the pool's
// default mode.
const run = pgx.QueryExecModeExec

const loadSQL = `SELECT access_token, token_type, refresh_token, expiry, expires_in,
	id_token, scope, refresh_token_expiry, refresh_token_family_issued, dpop_jkt
FROM refreshtoken_tokens WHERE key = $1::text`

// Load returns the stored token, or nil if there is none (no row, or a row
// that holds only a lease).
func (s *Store) Load(ctx context.Context) (*oauth2.Token, error) {
	var access, typ, refresh *string
	var expiry *time.Time
	var expiresIn *int64
	extras := make([]*string, len(keptExtras))
	dest := []any{&access, &typ, &refresh, &expiry, &expiresIn}
	for i := range extras {
		dest = append(dest, &extras[i])
	}
	err := s.pool.QueryRow(ctx, loadSQL, run, s.key).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, failed(ctx, "loading", s.key, err)
	}
	empty := access == nil && typ == nil && refresh == nil && expiry == nil && expiresIn == nil
	size := len(deref(access)) + len(deref(typ)) + len(deref(refresh))
	extra := map[string]any{}
	for i, v := range extras {
		empty = empty && v == nil
		size += len(deref(v))
		if deref(v) != "" {
			extra[keptExtras[i]] = *v
		}
	}
	switch {
	case empty:
		return nil, nil
	case size > maxToken:
		return nil, fmt.Errorf("pgstore: %q is not a token: more than %d bytes", s.key, maxToken)
	case expiresIn != nil && *expiresIn < 0:
		return nil, fmt.Errorf("pgstore: %q is not a token: bad expires_in", s.key)
	case deref(access) == "" && deref(refresh) == "":
		return nil, fmt.Errorf("pgstore: %q is not a token: it has neither an access token nor a refresh token", s.key)
	}
	tok := &oauth2.Token{AccessToken: deref(access), TokenType: deref(typ), RefreshToken: deref(refresh)}
	if expiry != nil {
		tok.Expiry = *expiry
	}
	if expiresIn != nil {
		tok.ExpiresIn = *expiresIn
	}
	return tok.WithExtra(extra), nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// keptExtras are the string extras of a token that the row keeps: two
// response fields, and what the source knows of the refresh token's
// lifetime and of the DPoP key it is bound to (the keys
// refreshtoken.ExtraRefreshTokenExpiry, ExtraRefreshTokenFamily and
// ExtraDPoPThumbprint, spelled out as in redisstore). They are the columns
// of the same names, in this order.
var keptExtras = []string{"id_token", "scope", "refresh_token_expiry", "refresh_token_family_issued", "dpop_jkt"}

// saveSQL writes the token of key $1, keeping the lease columns. With $2
// true it does so only if the stored hash is NULL (no refresh token
// stored), $3 (the previous refresh token's) or the new token's (a retried
// save that landed), and returns no row otherwise.
const saveSQL = `INSERT INTO refreshtoken_tokens AS t (key, access_token, token_type, refresh_token,
	refresh_token_hash, expiry, expires_in, id_token, scope, refresh_token_expiry,
	refresh_token_family_issued, dpop_jkt)
VALUES ($1::text, $4::text, $5::text, $6::text, $7::bytea, $8::timestamptz, $9::bigint,
	$10::text, $11::text, $12::text, $13::text, $14::text)
ON CONFLICT (key) DO UPDATE SET access_token = excluded.access_token,
	token_type = excluded.token_type, refresh_token = excluded.refresh_token,
	refresh_token_hash = excluded.refresh_token_hash, expiry = excluded.expiry,
	expires_in = excluded.expires_in, id_token = excluded.id_token, scope = excluded.scope,
	refresh_token_expiry = excluded.refresh_token_expiry,
	refresh_token_family_issued = excluded.refresh_token_family_issued,
	dpop_jkt = excluded.dpop_jkt
WHERE NOT $2::boolean OR t.refresh_token_hash IS NULL
	OR t.refresh_token_hash = $3::bytea OR t.refresh_token_hash = excluded.refresh_token_hash
RETURNING true`

// Save stores tok, replacing what is stored.
func (s *Store) Save(ctx context.Context, tok *oauth2.Token) error {
	_, err := s.save(ctx, tok, false, "")
	return err
}

// SaveIfCurrent stores tok if the stored refresh token is previous, or if
// nothing is stored, in one step; it reports whether it stored tok. A
// stored refresh token equal to tok's counts as current too: the store
// already holds tok (a retried save). The compare is on the refresh
// tokens' SHA-256.
func (s *Store) SaveIfCurrent(ctx context.Context, tok *oauth2.Token, previous string) (bool, error) {
	return s.save(ctx, tok, true, previous)
}

func (s *Store) save(ctx context.Context, tok *oauth2.Token, compare bool, previous string) (bool, error) {
	if tok.AccessToken == "" && tok.RefreshToken == "" {
		return false, errors.New("pgstore: refusing to save a token with neither an access token nor a refresh token")
	}
	args := []any{s.key, compare, hash(previous), null(tok.AccessToken), null(tok.TokenType),
		null(tok.RefreshToken), hash(tok.RefreshToken), nil, nil}
	size := len(tok.AccessToken) + len(tok.TokenType) + len(tok.RefreshToken)
	fits := storable(tok.AccessToken) && storable(tok.TokenType) && storable(tok.RefreshToken)
	if !tok.Expiry.IsZero() {
		// Down to PostgreSQL's microseconds, so that the stored expiry is
		// never later than the real one.
		args[7] = tok.Expiry.Truncate(time.Microsecond)
	}
	if tok.ExpiresIn > 0 {
		args[8] = tok.ExpiresIn
	}
	for _, k := range keptExtras {
		v, _ := tok.Extra(k).(string)
		if !storable(v) && (k == "id_token" || k == "scope") {
			// A response field the source does not need (Save may drop
			// it): refusing the token for it would lose a rotated
			// refresh token, which the server has already retired.
			v = ""
		}
		size += len(v)
		fits = fits && storable(v)
		args = append(args, null(v))
	}
	if !fits || size > maxToken {
		// Without sending it: the server's error would quote the bytes it
		// refused, which may be a token's.
		return false, fmt.Errorf("pgstore: refusing to save a token for %q: more than %d bytes, or a field that is not UTF-8 or holds a NUL byte", s.key, maxToken)
	}
	var saved bool
	err := s.pool.QueryRow(ctx, saveSQL, append([]any{run}, args...)...).Scan(&saved)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, failed(ctx, "saving", s.key, err)
	}
	return saved, nil
}

// failed is the error of a statement on key that failed. If ctx has
// ended, it wraps ctx's error too: a pool that cancels a statement at the
// server when its context ends gets the server's error, not the context's,
// and callers look for the context's.
func failed(ctx context.Context, doing, key string, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("pgstore: %s %q: %w (%w)", doing, key, err, ctx.Err())
	}
	return fmt.Errorf("pgstore: %s %q: %w", doing, key, err)
}

// storable reports whether PostgreSQL's text (UTF-8) can hold v.
func storable(v string) bool { return utf8.ValidString(v) && !strings.ContainsRune(v, 0) }

// null is v, or SQL NULL for "".
func null(v string) any {
	if v == "" {
		return nil
	}
	return v
}

// hash is the SHA-256 of a refresh token, or SQL NULL for none.
func hash(refreshToken string) any {
	if refreshToken == "" {
		return nil
	}
	h := sha256.Sum256([]byte(refreshToken))
	return h[:]
}

// lockSQL takes the lease of key $1 for owner $2, for $3 milliseconds of
// the server's clock, if it is free, has ended, or is already this owner's
// (a statement retried after a lost reply); in one statement, under the
// row's lock. It returns whether the lease is $2's, and the milliseconds
// left of the lease it found otherwise. A lease not taken is written back
// unchanged: the cost of one statement per poll.
const lockSQL = `INSERT INTO refreshtoken_tokens AS t (key, lock_owner, lock_until)
VALUES ($1::text, $2::text, clock_timestamp() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE SET
	lock_owner = CASE WHEN t.lock_until IS NULL OR t.lock_until <= clock_timestamp()
		OR t.lock_owner = excluded.lock_owner THEN excluded.lock_owner ELSE t.lock_owner END,
	lock_until = CASE WHEN t.lock_until IS NULL OR t.lock_until <= clock_timestamp()
		OR t.lock_owner = excluded.lock_owner THEN excluded.lock_until ELSE t.lock_until END
RETURNING t.lock_owner = $2::text,
	ceil(extract(epoch FROM t.lock_until - clock_timestamp()) * 1000)::bigint`

// unlockSQL ends the lease of key $1 if it is still owner $2's: once a
// lease has ended, the lock may be another's.
const unlockSQL = `UPDATE refreshtoken_tokens SET lock_owner = NULL, lock_until = NULL
WHERE key = $1::text AND lock_owner = $2::text`

// Poll intervals while another process holds the lock: a refresh usually
// takes tens of milliseconds, so the first polls come soon, and the
// interval doubles so that a long refresh costs few statements. A poll
// never comes later than the end of the holder's lease, so that a lock
// held by a process that died is taken as soon as it is free.
const (
	pollMin = 10 * time.Millisecond
	pollMax = 500 * time.Millisecond
)

// Lock takes the refresh lock, polling while another holder has it, until
// ctx ends. The lease ends at the returned time at the latest: it is
// measured from before the lock was asked for, so that it never ends later
// by the local clock than by the server's. unlock ends the lease only if it
// is still this holder's.
func (s *Store) Lock(ctx context.Context) (expires time.Time, unlock func(context.Context) error, err error) {
	owner := crand.Text()
	release := func(ctx context.Context) error {
		if _, err := s.pool.Exec(ctx, unlockSQL, run, s.key, owner); err != nil {
			return failed(ctx, "unlocking", s.key, err)
		}
		return nil
	}
	wait := pollMin
	for held := false; ; held = true {
		start := time.Now()
		var mine bool
		var left int64
		err := s.pool.QueryRow(ctx, lockSQL, run, s.key, owner, s.lease.Milliseconds()).Scan(&mine, &left)
		if err != nil && ctx.Err() != nil {
			// The deadline ended the statement, which may have taken the
			// lock all the same (its answer lost): release it, or the
			// others wait for its lease for nothing.
			cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			release(cleanup)
			cancel()
			if held {
				return time.Time{}, nil, fmt.Errorf("pgstore: %q is locked by another process: %w", s.key, ctx.Err())
			}
		}
		if err != nil {
			return time.Time{}, nil, failed(ctx, "locking", s.key, err)
		}
		if mine {
			return start.Add(s.lease), release, nil
		}
		// Half the interval plus a random half, so that waiting processes
		// do not poll in step; no later than the lease's end.
		// left is capped before it is made a Duration: a lease centuries
		// away (a corrupt row) would overflow, negative, to a poll a
		// millisecond.
		d := wait/2 + rand.N(wait/2+1)
		if ttl := time.Duration(min(left, pollMax.Milliseconds())) * time.Millisecond; ttl < d {
			d = max(ttl, 0) + time.Millisecond
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, nil, fmt.Errorf("pgstore: %q is locked by another process: %w", s.key, ctx.Err())
		}
		wait = min(2*wait, pollMax)
	}
}
