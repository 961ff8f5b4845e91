package refreshtoken_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// jsonLog is a slog logger that writes JSON records into a buffer.
type jsonLog struct {
	buf bytes.Buffer
	obs refreshtoken.Observer
}

func newJSONLog(level slog.Level) *jsonLog {
	l := &jsonLog{}
	l.obs = refreshtoken.SlogObserver(slog.New(slog.NewJSONHandler(&l.buf, &slog.HandlerOptions{Level: level})))
	return l
}

// records returns the records logged so far.
func (l *jsonLog) records(t *testing.T) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// record returns the one record with msg, failing the test if there is
// not exactly one.
func (l *jsonLog) record(t *testing.T, msg string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, r := range l.records(t) {
		if r["msg"] == msg {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d records %q, want 1; log:\n%s", len(found), msg, l.buf.String())
	}
	return found[0]
}

// checkAttrs fails the test if rec lacks one of want's attributes or has
// another value; a nil value in want only asks for the key.
func checkAttrs(t *testing.T, rec map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := rec[k]
		if !ok || (v != nil && got != v) {
			t.Errorf("record %q: %s = %v, want %v", rec["msg"], k, got, v)
		}
	}
}

func TestSlogRefresh(t *testing.T) {
	clock := newFakeClock(t0)
	log := newJSONLog(slog.LevelDebug)
	srv, ts, _, rt := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithObserver(log.obs))
	mustToken(t, ts)
	newest, _ := srv.Newest(rt)

	checkAttrs(t, log.record(t, "refresh started"), map[string]any{"level": "DEBUG", "refresh": 1.0, "reason": "no_token",
		"rt_fingerprint": refreshtoken.Fingerprint(rt), "time_left": 0.0})
	checkAttrs(t, log.record(t, "token refreshed"), map[string]any{"level": "DEBUG", "refresh": 1.0, "outcome": "ok",
		"rotated": true, "rt_fingerprint": refreshtoken.Fingerprint(rt), "new_rt_fingerprint": refreshtoken.Fingerprint(newest),
		"lifetime": float64(time.Hour), "waiters": 1.0, "duration": nil, "request": nil, "longest_wait": nil})
	checkAttrs(t, log.record(t, "waited for a token"), map[string]any{"level": "DEBUG", "refresh": 1.0})

	srv.Inject(1, refreshtokentest.Fault{Status: 503})
	ts.Invalidate()
	ts.Token()
	rec := log.record(t, "refresh failed; retrying")
	checkAttrs(t, rec, map[string]any{"level": "WARN", "refresh": 2.0, "outcome": "transient", "status": 503.0,
		"error_code": "server_error", "retry_at": nil, "err": nil})

	clock.Add(time.Hour) // past the back-off
	srv.Inject(1, refreshtokentest.Fault{Status: 403, Error: "invalid_grant"})
	ts.Token()
	checkAttrs(t, log.record(t, "refresh token rejected; sign in again"), map[string]any{"level": "ERROR", "refresh": 3.0,
		"outcome": "rejected", "status": 403.0, "error_code": "invalid_grant"})

	rt2 := srv.NewRefreshToken("")
	ts.SetToken(&oauth2.Token{RefreshToken: rt2})
	checkAttrs(t, log.record(t, "token set; refreshes resume"), map[string]any{"level": "INFO", "recovered": true,
		"rt_fingerprint": refreshtoken.Fingerprint(rt2)})
}

func TestSlogStore(t *testing.T) {
	clock := newFakeClock(t0)
	mem := refreshtokentest.NewMemoryStore(clock.Now, 0)
	log := newJSONLog(slog.LevelDebug)
	_, ts, _, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithStore(mem), refreshtoken.WithObserver(log.obs))
	mem.SetFaults(refreshtokentest.StoreFaults{Load: errors.New("store is down")})
	ts.Token()
	checkAttrs(t, log.record(t, "store read failed"), map[string]any{"level": "WARN", "refresh": 1.0, "err": nil})
	checkAttrs(t, log.record(t, "refresh not sent; retrying"), map[string]any{"level": "WARN", "outcome": "not_sent", "retry_at": nil})

	clock.Add(time.Hour)
	mem.SetFaults(refreshtokentest.StoreFaults{Save: errors.New("disk full")})
	ts.Token()
	checkAttrs(t, log.record(t, "token not saved; retrying"), map[string]any{"level": "ERROR", "refresh": 2.0, "result": "failed",
		"err": nil})
	checkAttrs(t, log.record(t, "token refreshed but not saved; a rotated refresh token may be lost"),
		map[string]any{"level": "ERROR", "refresh": 2.0, "outcome": "ok", "rotated": true, "err": nil})
	checkAttrs(t, log.record(t, "refresh lock kept until its lease ends"), map[string]any{"level": "DEBUG", "refresh": 2.0, "kept": true})
	checkAttrs(t, log.record(t, "refresh lock taken"), map[string]any{"level": "DEBUG", "refresh": 2.0, "waited": nil})

	mem.SetFaults(refreshtokentest.StoreFaults{})
	ts.Flush()
	checkAttrs(t, log.record(t, "token saved"), map[string]any{"level": "DEBUG", "refresh": 0.0, "retry": true, "result": "ok"})
}

func TestSlogUnauthorized(t *testing.T) {
	clock := newFakeClock(t0)
	log := newJSONLog(slog.LevelDebug)
	_, ts, _, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithObserver(log.obs))
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "wrong audience", http.StatusUnauthorized)
	}))
	defer api.Close()
	client := refreshtoken.NewClient(context.Background(), ts)
	for range 2 {
		if resp, err := client.Get(api.URL); err == nil {
			resp.Body.Close()
		}
	}
	checkAttrs(t, log.record(t, "API rejected the new token too"), map[string]any{"level": "WARN", "dropped": true, "retried": true, "rejected_again": true})
	checkAttrs(t, log.record(t, "API answered 401"), map[string]any{"level": "INFO", "dropped": true, "retried": false})
}

// TestSlogQuiet: above Debug, a routine refresh logs nothing, and an event
// costs no allocation.
func TestSlogQuiet(t *testing.T) {
	clock := newFakeClock(t0)
	log := newJSONLog(slog.LevelInfo)
	_, ts, _, _ := observed(t, clock, refreshtokentest.Config{}, refreshtoken.WithObserver(log.obs))
	mustToken(t, ts)
	clock.Set(t0.Add(58 * time.Minute))
	mustToken(t, ts)
	refreshtoken.WaitIdle(ts)
	if log.buf.Len() != 0 {
		t.Errorf("logged at Info:\n%s", log.buf.String())
	}
	var e refreshtoken.Event = refreshtoken.RefreshEnded{ID: 1, Outcome: refreshtoken.OutcomeOK, Rotated: true, Waiters: 2}
	if n := testing.AllocsPerRun(100, func() { log.obs.Observe(e) }); n != 0 {
		t.Errorf("Observe of a disabled event: %v allocations, want 0", n)
	}
}

// TestSlogLevels checks the level of each kind of record, for events
// built here (the tests above provoke them).
func TestSlogLevels(t *testing.T) {
	failed := errors.New("failed")
	tests := []struct {
		e    refreshtoken.Event
		want string
	}{
		{refreshtoken.RefreshStarted{}, "DEBUG"},
		{refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeOK}, "DEBUG"},
		{refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeStored}, "DEBUG"},
		{refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeOK, Err: failed}, "ERROR"}, // the callback
		{refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeTransient, Err: failed}, "WARN"},
		{refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeNotSent, Err: failed}, "WARN"},
		{refreshtoken.RefreshEnded{Outcome: refreshtoken.OutcomeRejected, Err: failed}, "ERROR"},
		{refreshtoken.StoreLoaded{}, "DEBUG"},
		{refreshtoken.StoreLoaded{Err: failed}, "WARN"},
		{refreshtoken.StoreSaved{Result: refreshtoken.SaveOK}, "DEBUG"},
		{refreshtoken.StoreSaved{Result: refreshtoken.SaveFailed, Err: failed}, "ERROR"},
		{refreshtoken.StoreSaved{Result: refreshtoken.SaveSuperseded}, "INFO"},
		{refreshtoken.LockWaited{}, "DEBUG"},
		{refreshtoken.LockWaited{Err: failed}, "DEBUG"},
		{refreshtoken.LockReleased{Kept: true}, "DEBUG"},
		{refreshtoken.Waited{Context: context.Background()}, "DEBUG"},
		{refreshtoken.Waited{}, "DEBUG"}, // no context: Background
		{refreshtoken.Unauthorized{Dropped: true}, "INFO"},
		{refreshtoken.Unauthorized{Retried: true, RejectedAgain: true}, "WARN"},
		{refreshtoken.TokenSet{}, "INFO"},
		{refreshtoken.TokenSet{Recovered: true}, "INFO"},
	}
	for _, tt := range tests {
		log := newJSONLog(slog.LevelDebug)
		log.obs.Observe(tt.e)
		recs := log.records(t)
		if len(recs) != 1 || recs[0]["level"] != tt.want {
			t.Errorf("%T %+v: logged %s, want one record at %s", tt.e, tt.e, log.buf.String(), tt.want)
		}
	}
}
