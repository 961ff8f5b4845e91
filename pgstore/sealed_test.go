package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// TestSealedConformance: a pgstore sealed by sealedstore keeps the
// SharedStore contract, on two pools, with the row's lease.
func TestSealedConformance(t *testing.T) {
	pg := startPostgres(t)
	a, b := pg.Pool(), pg.Pool()
	keys := fleetKeys()
	var n atomic.Int32
	refreshtokentest.TestSharedStore(t, func(*testing.T) (refreshtokentest.SharedStore, refreshtokentest.SharedStore) {
		key := fmt.Sprintf("sealed:%d", n.Add(1))
		return sealedstore.New(pgstore.New(a, key), key, keys).(refreshtoken.SharedStore),
			sealedstore.New(pgstore.New(b, key), key, keys).(refreshtoken.SharedStore)
	})
}

// TestSealedRowHoldsNoSecret: what a sealed store leaves in the table (the
// whole row, as the server prints it) holds neither token, and a row
// copied to another user's key does not open there.
func TestSealedRowHoldsNoSecret(t *testing.T) {
	pg := startPostgres(t)
	pool := pg.Pool()
	ctx := context.Background()
	keys := fleetKeys()
	tok := (&oauth2.Token{AccessToken: "at-secret-4f1c", TokenType: "Bearer", RefreshToken: "rt-secret-9a2e"}).
		WithExtra(map[string]any{"id_token": "id-secret-77b0"})
	if err := sealedstore.New(pgstore.New(pool, "user-1"), "user-1", keys).Save(ctx, tok); err != nil {
		t.Fatal(err)
	}
	var row string
	if err := pool.QueryRow(ctx, `SELECT row_to_json(t)::text FROM refreshtoken_tokens t WHERE key = 'user-1'`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"at-secret-4f1c", "rt-secret-9a2e", "id-secret-77b0"} {
		if strings.Contains(row, secret) {
			t.Errorf("the row holds %q: %s", secret, row)
		}
	}
	if !strings.Contains(row, `"access_token":"sealed.v1.`) {
		t.Errorf("the row's access_token is not a sealed entry: %s", row)
	}

	pg.exec(`INSERT INTO refreshtoken_tokens (key, access_token, refresh_token, refresh_token_hash, expiry)
		SELECT 'user-2', access_token, refresh_token, refresh_token_hash, expiry FROM refreshtoken_tokens WHERE key = 'user-1'`)
	got, err := sealedstore.New(pgstore.New(pool, "user-2"), "user-2", keys).Load(ctx)
	if got != nil || !errors.Is(err, sealedstore.ErrCannotOpen) {
		t.Errorf("Load of user-1's row copied to user-2 = %v, %v; want ErrCannotOpen", got != nil, err)
	}
}

// TestSealedLargestToken: a token as large as a source can be given (it
// reads at most 1 MiB of a token endpoint's answer), sealed (a third
// larger), is within what pgstore saves and loads: no rotated token is
// refused.
func TestSealedLargestToken(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	st := sealedstore.New(pgstore.New(pg.Pool(), "user-1"), "user-1", fleetKeys())
	tok := &oauth2.Token{AccessToken: strings.Repeat("e", 1<<20), RefreshToken: "rt-large"}
	if err := st.Save(ctx, tok); err != nil {
		t.Fatalf("Save of a sealed 1 MiB token = %v", err)
	}
	if got, err := st.Load(ctx); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("Load of a sealed 1 MiB token = %v, %v; want it", got != nil, err)
	}
}
