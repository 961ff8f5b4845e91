package refreshtokentest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestStore checks that a [Store] keeps the contract of
// refreshtoken.Store, as testing/fstest.TestFS checks a file system, and
// reports each broken rule with t.Errorf. newStore returns a new, empty
// store at each call; TestStore calls it once per check, with the check's
// t.
//
// The checks: Load of an empty store returns nil and no error; Load
// returns what Save stored (the access and refresh tokens, the type,
// ExpiresIn, and the expiry to the second, zero staying zero), for tokens
// of up to 8 KiB, of any Unicode, and the sign-out that refreshtoken.Revoke
// saves; Save replaces the whole token; the
// id_token and scope extras, which a store may drop, come back unchanged if
// they come back; the token Load returns is the caller's to modify; a call
// whose context has ended fails or does its work, and breaks nothing.
// TestStore does not modify the tokens it passes to Save, which are Save's
// to keep.
func TestStore(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	t.Run("LoadEmpty", func(t *testing.T) {
		if tok, err := newStore(t).Load(ctx); tok != nil || err != nil {
			t.Errorf("Load of an empty store = %v, %v; want nil, nil", tok, err)
		}
	})
	for _, tc := range roundTrips() {
		t.Run("RoundTrip/"+tc.name, func(t *testing.T) {
			s := newStore(t)
			if err := s.Save(ctx, tc.tok); err != nil {
				t.Fatalf("Save of a token with %s = %v", tc.name, err)
			}
			checkLoad(t, s, "Load after Save of a token with "+tc.name, tc.tok)
		})
	}
	t.Run("SaveReplaces", func(t *testing.T) {
		s := newStore(t)
		if err := s.Save(ctx, fullToken()); err != nil {
			t.Fatal(err)
		}
		next := &oauth2.Token{RefreshToken: "rt-next"}
		if err := s.Save(ctx, next); err != nil {
			t.Fatal(err)
		}
		checkLoad(t, s, "Load after a Save replaced a token with every field by one with a refresh token only", next)
	})
	t.Run("LoadReturnsACopy", func(t *testing.T) {
		s := newStore(t)
		want := fullToken()
		if err := s.Save(ctx, want); err != nil {
			t.Fatal(err)
		}
		got := checkLoad(t, s, "Load", want)
		if got == nil {
			return
		}
		got.AccessToken, got.RefreshToken, got.Expiry, got.ExpiresIn = "at-changed", "rt-changed", time.Time{}, 1
		checkLoad(t, s, "Load after the caller changed the token an earlier Load returned", want)
	})
	t.Run("ContextEnded", func(t *testing.T) {
		checkContextEnded(t, newStore(t))
	})
}

// roundTrips are the tokens of the RoundTrip checks, by what they hold.
func roundTrips() []struct {
	name string
	tok  *oauth2.Token
} {
	now := time.Now() // with a monotonic reading, which a store must not choke on
	return []struct {
		name string
		tok  *oauth2.Token
	}{
		{"every field", fullToken()},
		{"a refresh token only", &oauth2.Token{RefreshToken: "rt-1"}},
		// What refreshtoken's Revoke and Forget save.
		{"the sign-out", &oauth2.Token{RefreshToken: "refreshtoken:signed-out"}},
		{"no expiry", &oauth2.Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1"}},
		{"a monotonic clock reading", &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: now.Add(time.Hour), ExpiresIn: 3600}},
		{"an expiry a year ahead", &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: now.Add(365 * 24 * time.Hour), ExpiresIn: 365 * 24 * 3600}},
		{"an expiry past", &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: now.Add(-time.Hour), ExpiresIn: 60}},
		{"Unicode and quotes", &oauth2.Token{AccessToken: "at-ünïcödé-\"🔑\"\\", TokenType: "Bearer", RefreshToken: "rt-ünïcödé-\"🔑\"\n\t"}},
		{"8 KiB tokens", &oauth2.Token{AccessToken: strings.Repeat("eyJhbGciOiJSUzI1NiJ9.", 8192/21+1)[:8192], TokenType: "Bearer",
			RefreshToken: strings.Repeat("r", 8192), Expiry: now.Add(time.Hour), ExpiresIn: 3600}},
	}
}

// fullToken is a token with every field a source relies on, and extras.
func fullToken() *oauth2.Token {
	return (&oauth2.Token{AccessToken: "at-1", TokenType: "Bearer", RefreshToken: "rt-1",
		Expiry: time.Date(2026, 11, 25, 13, 0, 0, 123456789, time.UTC), ExpiresIn: 3600}).
		WithExtra(map[string]any{"id_token": "id-1", "scope": "openid offline_access",
			refreshExpiryKey: "2026-12-25T12:00:00.5Z", refreshFamilyKey: "2026-11-25T11:00:00Z",
			dpopThumbKey: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
}

// checkLoad reports, as what, a Load of s that fails or differs from want
// (nil: nothing stored), and returns what Load returned.
func checkLoad(t *testing.T, s Store, what string, want *oauth2.Token) *oauth2.Token {
	t.Helper()
	got, err := s.Load(context.Background())
	if err != nil {
		t.Errorf("%s = %v", what, err)
		return nil
	}
	if diff := tokenDiff(want, got); diff != "" {
		t.Errorf("%s: %s", what, diff)
	}
	return got
}

// tokenDiff describes how got differs from want in what a store keeps, or
// returns "". An expiry may differ by less than a second; the extras
// (id_token, scope, and what is known of the refresh token's lifetime) may
// be missing.
func tokenDiff(want, got *oauth2.Token) string {
	if want == nil || got == nil {
		if want != got {
			return fmt.Sprintf("got %s, want %s", describe(got), describe(want))
		}
		return ""
	}
	var d []string
	for _, f := range []struct{ name, want, got string }{
		{"AccessToken", want.AccessToken, got.AccessToken},
		{"TokenType", want.TokenType, got.TokenType},
		{"RefreshToken", want.RefreshToken, got.RefreshToken},
	} {
		if f.got != f.want {
			d = append(d, fmt.Sprintf("%s = %s, want %s", f.name, short(f.got), short(f.want)))
		}
	}
	if delta := got.Expiry.Sub(want.Expiry); got.Expiry.IsZero() != want.Expiry.IsZero() || delta <= -time.Second || delta >= time.Second {
		d = append(d, fmt.Sprintf("Expiry = %v, want %v", got.Expiry, want.Expiry))
	}
	if got.ExpiresIn != want.ExpiresIn {
		d = append(d, fmt.Sprintf("ExpiresIn = %d, want %d", got.ExpiresIn, want.ExpiresIn))
	}
	for _, k := range keptExtras {
		if v := got.Extra(k); v != nil && v != want.Extra(k) {
			d = append(d, fmt.Sprintf("Extra(%q) = %v, want %v (or nil: a store may drop it)", k, v, want.Extra(k)))
		}
	}
	return strings.Join(d, "; ")
}

func describe(tok *oauth2.Token) string {
	if tok == nil {
		return "nil"
	}
	return fmt.Sprintf("a token with refresh token %s", short(tok.RefreshToken))
}

// short quotes s, cut if long.
func short(s string) string {
	if len(s) > 40 {
		return strconv.Quote(s[:20]) + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return strconv.Quote(s)
}

// checkContextEnded calls s's methods with a context that has ended: each
// must fail, or succeed and do its work; neither may leave a broken token.
func checkContextEnded(t *testing.T, s Store) {
	ctx := context.Background()
	ended, cancel := context.WithCancel(ctx)
	cancel()
	old := &oauth2.Token{AccessToken: "at-0", RefreshToken: "rt-0"}
	if err := s.Save(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ended); err == nil && tokenDiff(old, got) != "" {
		t.Errorf("Load with an ended context succeeded: %s", tokenDiff(old, got))
	}
	tok := fullToken()
	err := s.Save(ended, tok)
	got, lerr := s.Load(ctx)
	switch {
	case lerr != nil:
		t.Fatalf("Load after a Save with an ended context = %v", lerr)
	case err == nil && tokenDiff(tok, got) != "":
		t.Errorf("Load after a Save with an ended context succeeded: %s", tokenDiff(tok, got))
	case err != nil && tokenDiff(old, got) != "" && tokenDiff(tok, got) != "":
		t.Errorf("Load after a Save with an ended context failed: %s; want the old token or the new one", tokenDiff(tok, got))
	}
}
