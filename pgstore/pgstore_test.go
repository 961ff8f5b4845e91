package pgstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestConformance: two Stores on one key, each with its own pool, are two
// processes' handles on one row.
func TestConformance(t *testing.T) {
	pg := startPostgres(t)
	a, b := pg.Pool(), pg.Pool()
	var keys atomic.Int32
	refreshtokentest.TestSharedStore(t, func(*testing.T) (refreshtokentest.SharedStore, refreshtokentest.SharedStore) {
		key := fmt.Sprintf("conformance:%d", keys.Add(1))
		return pgstore.New(a, key), pgstore.New(b, key)
	})
	_ = context.Background
}
