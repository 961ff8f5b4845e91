package pgstore_test

import (
	"context"
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
