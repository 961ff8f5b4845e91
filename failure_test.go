package refreshtoken

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestBackoff(t *testing.T) {
	ceilings := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, ceiling := range ceilings {
		n := i + 1
		if got := backoff(n, 0); got != 0 {
			t.Errorf("backoff(%d, 0) = %v, want 0 (full jitter)", n, got)
		}
		if got := backoff(n, 0.5); got != ceiling/2 {
			t.Errorf("backoff(%d, 0.5) = %v, want %v", n, got, ceiling/2)
		}
		if got := backoff(n, 1-1e-9); got >= ceiling || got < ceiling-time.Millisecond {
			t.Errorf("backoff(%d, ~1) = %v, want just under %v", n, got, ceiling)
		}
	}
	if got := backoff(1<<30, 0.5); got != 30*time.Second {
		t.Errorf("backoff(huge, 0.5) = %v, want 30s (cap 1m)", got)
	}
}

func retrieveError(status int, code string, header http.Header) error {
	re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: status, Status: http.StatusText(status), Header: header}, ErrorCode: code}
	return &endpointError{re}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "invalid_grant 400", err: retrieveError(400, "invalid_grant", nil), want: true},
		{name: "invalid_grant 401", err: retrieveError(401, "invalid_grant", nil), want: true},
		{name: "invalid_grant 403", err: retrieveError(403, "invalid_grant", nil), want: true},
		{name: "invalid_grant on a 200", err: retrieveError(200, "invalid_grant", nil), want: true},
		{name: "invalid_client", err: retrieveError(401, "invalid_client", nil), want: true},
		{name: "unauthorized_client", err: retrieveError(400, "unauthorized_client", nil), want: true},
		{name: "access_denied", err: retrieveError(403, "access_denied", nil), want: true},
		{name: "unsupported_grant_type", err: retrieveError(400, "unsupported_grant_type", nil), want: true},
		{name: "invalid_scope", err: retrieveError(400, "invalid_scope", nil), want: true},
		{name: "wrapped", err: fmt.Errorf("x: %w", retrieveError(403, "invalid_grant", nil)), want: true},
		{name: "too_many_requests", err: retrieveError(429, "too_many_requests", nil), want: false},
		{name: "500 without code", err: retrieveError(500, "", nil), want: false},
		{name: "503 temporarily_unavailable", err: retrieveError(503, "temporarily_unavailable", nil), want: false},
		{name: "400 with an unknown code", err: retrieveError(400, "something_new", nil), want: false},
		{name: "404 without code", err: retrieveError(404, "", nil), want: false},
		{name: "network error", err: errors.New("connection reset"), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permanent(tt.err); got != tt.want {
				t.Errorf("permanent() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestServerWait(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	h := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	unix := func(t time.Time) string { return fmt.Sprint(t.Unix()) }
	tests := []struct {
		name   string
		err    error
		want   time.Time
		reason string
	}{
		{name: "Retry-After seconds", err: retrieveError(429, "too_many_requests", h("Retry-After", "7")), want: now.Add(7 * time.Second)},
		{name: "Retry-After HTTP date", err: retrieveError(503, "", h("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))), want: now.Add(90 * time.Second)},
		{name: "Retry-After on a 503", err: retrieveError(503, "", h("Retry-After", "30")), want: now.Add(30 * time.Second)},
		{name: "X-RateLimit-Reset", err: retrieveError(429, "too_many_requests", h("X-RateLimit-Reset", unix(now.Add(20*time.Second)))), want: now.Add(20 * time.Second)},
		{name: "both: the later", err: retrieveError(429, "", h("Retry-After", "5", "X-RateLimit-Reset", unix(now.Add(20*time.Second)))), want: now.Add(20 * time.Second)},
		{name: "both: the later, other way", err: retrieveError(429, "", h("Retry-After", "50", "X-RateLimit-Reset", unix(now.Add(20*time.Second)))), want: now.Add(50 * time.Second)},
		{name: "X-RateLimit-Reset on a 500 is ignored", err: retrieveError(500, "", h("X-RateLimit-Reset", unix(now.Add(20*time.Second)))), want: time.Time{},
			reason: "Auth0 sends the rate-limit headers on every answer; only a 429 means the limit is hit"},
		{name: "Retry-After capped", err: retrieveError(429, "", h("Retry-After", "86400")), want: now.Add(10 * time.Minute)},
		{name: "Reset capped", err: retrieveError(429, "", h("X-RateLimit-Reset", unix(now.Add(48*time.Hour)))), want: now.Add(10 * time.Minute)},
		{name: "garbage headers", err: retrieveError(429, "", h("Retry-After", "soon", "X-RateLimit-Reset", "later")), want: time.Time{}},
		{name: "negative Retry-After", err: retrieveError(429, "", h("Retry-After", "-5")), want: time.Time{}},
		{name: "Retry-After overflowing int64 capped", err: retrieveError(503, "", h("Retry-After", "99999999999999999999")), want: now.Add(10 * time.Minute),
			reason: "all digits: a wait, however long, is capped, not ignored"},
		{name: "Retry-After MaxInt64 capped", err: retrieveError(503, "", h("Retry-After", "9223372036854775807")), want: now.Add(10 * time.Minute)},
		{name: "Retry-After just over the cap", err: retrieveError(503, "", h("Retry-After", "601")), want: now.Add(10 * time.Minute)},
		{name: "Retry-After at the cap", err: retrieveError(503, "", h("Retry-After", "600")), want: now.Add(10 * time.Minute)},
		{name: "Retry-After leading zeros", err: retrieveError(503, "", h("Retry-After", "0007")), want: now.Add(7 * time.Second)},
		{name: "Retry-After with spaces", err: retrieveError(503, "", h("Retry-After", " 5 ")), want: now.Add(5 * time.Second)},
		{name: "Retry-After zero", err: retrieveError(503, "", h("Retry-After", "0")), want: time.Time{}, reason: "no wait asked"},
		{name: "Retry-After plus sign", err: retrieveError(503, "", h("Retry-After", "+5")), want: time.Time{},
			reason: "not 1*DIGIT (RFC 9110): ignored, the back-off applies"},
		{name: "Retry-After fraction", err: retrieveError(503, "", h("Retry-After", "5.5")), want: time.Time{}, reason: "not 1*DIGIT"},
		{name: "Retry-After negative huge", err: retrieveError(503, "", h("Retry-After", "-99999999999999999999")), want: time.Time{}},
		{name: "Retry-After date in the past", err: retrieveError(503, "", h("Retry-After", now.Add(-time.Hour).Format(http.TimeFormat))), want: time.Time{}},
		{name: "Retry-After date far away capped", err: retrieveError(503, "", h("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")), want: now.Add(10 * time.Minute)},
		{name: "Reset overflowing int64 capped", err: retrieveError(429, "", h("X-RateLimit-Reset", "99999999999999999999")), want: now.Add(10 * time.Minute)},
		{name: "Reset MaxInt64 capped", err: retrieveError(429, "", h("X-RateLimit-Reset", "9223372036854775807")), want: now.Add(10 * time.Minute),
			reason: "time.Unix would overflow into the past"},
		{name: "Reset in milliseconds capped", err: retrieveError(429, "", h("X-RateLimit-Reset", fmt.Sprint(now.Add(20*time.Second).UnixMilli()))), want: now.Add(10 * time.Minute),
			reason: "far future: capped; units are not guessed"},
		{name: "Reset in the past ignored", err: retrieveError(429, "", h("X-RateLimit-Reset", unix(now.Add(-time.Minute)))), want: time.Time{}},
		{name: "Reset as a delta ignored", err: retrieveError(429, "", h("X-RateLimit-Reset", "20")), want: time.Time{},
			reason: "read as UNIX seconds: 1970, in the past"},
		{name: "Reset negative ignored", err: retrieveError(429, "", h("X-RateLimit-Reset", "-5")), want: time.Time{}},
		{name: "Reset with spaces", err: retrieveError(429, "", h("X-RateLimit-Reset", " "+unix(now.Add(20*time.Second))+" ")), want: now.Add(20 * time.Second)},
		{name: "no headers", err: retrieveError(429, "", nil), want: time.Time{}},
		{name: "not an answer", err: errors.New("timeout"), want: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serverWait(tt.err, now); !got.Equal(tt.want) {
				t.Errorf("serverWait() = %v, want %v %s", got, tt.want, tt.reason)
			}
		})
	}
}
