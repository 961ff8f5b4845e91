package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken/pgstore"
)

// TestLeaseNotLaterThanServer: the lease Lock returns ends no later, by
// the machine's clock (the server is local, so it shares it), than the
// lock_until the server wrote, whatever fraction of a millisecond the
// lease was given: the server counts whole milliseconds.
func TestLeaseNotLaterThanServer(t *testing.T) {
	pg := startPostgres(t)
	pool := pg.Pool()
	ctx := context.Background()
	for _, lease := range []time.Duration{
		time.Millisecond + 999*time.Microsecond,
		time.Hour + time.Millisecond - time.Nanosecond,
		500 * time.Microsecond, // counted as 1 ms
	} {
		key := "fraction:" + lease.String()
		expires, unlock, err := pgstore.New(pool, key, pgstore.WithLease(lease)).Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var until time.Time
		if err := pool.QueryRow(ctx, `SELECT lock_until FROM refreshtoken_tokens WHERE key = $1`, key).Scan(&until); err != nil {
			t.Fatal(err)
		}
		if expires.After(until) {
			t.Errorf("WithLease(%v): Lock's lease ends at %v, %v after the server's (%v)", lease, expires, expires.Sub(until), until)
		}
		if err := unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLockPollsAFarLeaseGently: a lease that ends centuries from now (a
// hostile or corrupt row; the time left in nanoseconds overflows an
// int64) is polled at the usual doubling interval until the context
// ends, not every millisecond.
func TestLockPollsAFarLeaseGently(t *testing.T) {
	pg := startPostgres(t)
	pool, _, statements := countingPool(t, pg)
	ctx := context.Background()
	const key = "far:user-1"
	if _, err := pool.Exec(ctx, `INSERT INTO refreshtoken_tokens (key, lock_owner, lock_until)
		VALUES ($1, 'someone', clock_timestamp() + interval '300 years')`, key); err != nil {
		t.Fatal(err)
	}
	before := statements.n.Load()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, _, err := pgstore.New(pool, key).Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v; want the context's deadline", err)
	}
	// Polls come at least 5, 10, 20, 40, 80, 160, 250 ms apart: at
	// most 8 in 500 ms, however fast the machine.
	if n := statements.n.Load() - before; n > 8 {
		t.Errorf("Lock sent %d statements in 500 ms on a lease held for centuries; want at most 8", n)
	}
}
