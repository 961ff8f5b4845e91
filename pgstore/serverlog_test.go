package pgstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/pgstore"
)

// TestServerLog: what PostgreSQL writes to its log about a Store's
// statements. At the default settings a failed statement is logged with
// its text (log_min_error_statement = error), which holds $n and no value
// (log_parameter_max_length_on_error = 0). Logging statements
// (log_statement, log_min_duration_statement) logs their parameters, the
// tokens, in full (log_parameter_max_length = -1), unless the role sets
// log_parameter_max_length = 0, as docs/stores.md advises.
func TestServerLog(t *testing.T) {
	for _, tc := range []struct {
		name      string
		settings  []string
		grant     string // to the role app
		roleSet   string // ALTER ROLE app SET ...; "" for none
		migration string // run on the table first; "" for none
		wantSaved bool
		wantLog   string // a line the log must hold: what was logged
		wantToken bool
	}{
		{"defaults, a failed save", nil, "SELECT", "", "", false, "STATEMENT:  INSERT INTO refreshtoken_tokens", false},
		{"log_statement=mod", []string{"log_statement=mod"}, "SELECT, INSERT, UPDATE", "", "", true, "parameters: $1 = ", true},
		{"log_min_duration_statement=0", []string{"log_min_duration_statement=0"}, "SELECT, INSERT, UPDATE", "", "", true, "parameters: $1 = ", true},
		{"log_statement=mod, log_parameter_max_length=0 for the role", []string{"log_statement=mod"}, "SELECT, INSERT, UPDATE",
			"log_parameter_max_length = 0", "", true, "execute <unnamed>: INSERT INTO refreshtoken_tokens", false},
		// A constraint added to the table: the server's error quotes the
		// failing row in its DETAIL, which the log holds (the error's
		// text, which pgx's PgError.Error gives, does not).
		{"defaults, a CHECK added by a migration", nil, "SELECT, INSERT, UPDATE", "",
			"ALTER TABLE refreshtoken_tokens ADD CHECK (length(access_token) < 5)", false, "Failing row contains", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := startPostgres(t, tc.settings...)
			pg.exec(`CREATE ROLE app LOGIN`)
			pg.exec(`GRANT ` + tc.grant + ` ON refreshtoken_tokens TO app`)
			if tc.roleSet != "" {
				pg.exec(`ALTER ROLE app SET ` + tc.roleSet)
			}
			if tc.migration != "" {
				pg.exec(tc.migration)
			}
			pool := pg.PoolWithDSN("postgres://app@" + pg.Addr() + "/postgres?sslmode=disable")
			tok := &oauth2.Token{AccessToken: "at-SECRET-access", RefreshToken: "rt-SECRET-refresh"}
			err := pgstore.New(pool, "log:user-1").Save(context.Background(), tok)
			if saved := err == nil; saved != tc.wantSaved {
				t.Fatalf("Save = %v; want saved %v", err, tc.wantSaved)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("Save's error %q holds a token", err)
			}
			log, err := os.ReadFile(filepath.Join(pg.dir, "postgres.log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(log), tc.wantLog) {
				t.Errorf("the server's log holds no %q:\n%s", tc.wantLog, log)
			}
			if got := strings.Contains(string(log), "SECRET"); got != tc.wantToken {
				t.Errorf("token in the server's log: %v, want %v:\n%s", got, tc.wantToken, log)
			}
		})
	}
}
