package refreshtoken_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// thumbOf is the JWK thumbprint of an ECDSA P-256 key.
func thumbOf(t *testing.T, key crypto.Signer) string {
	t.Helper()
	ek, err := key.Public().(*ecdsa.PublicKey).ECDH()
	if err != nil {
		t.Fatal(err)
	}
	b, enc := ek.Bytes(), base64.RawURLEncoding
	return refreshtoken.Thumbprint(map[string]string{"kty": "EC", "crv": "P-256", "x": enc.EncodeToString(b[1:33]), "y": enc.EncodeToString(b[33:])})
}

// boundStore returns a DPoP server and a store that holds a refresh token
// bound to key, by a refresh made with it, and whose access token has
// expired by clk.
func boundStore(t *testing.T, clk *fakeClock, key crypto.Signer) (*refreshtokentest.Server, *refreshtokentest.MemoryStore) {
	t.Helper()
	srv := dpopServer(t, clk, false)
	st := refreshtokentest.NewMemoryStore(clk.Now, 0)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithDPoP(key), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() = %v", err)
	}
	if got, want := st.Stored().Extra(refreshtoken.ExtraDPoPThumbprint), thumbOf(t, key); got != want {
		t.Fatalf("stored Extra(ExtraDPoPThumbprint) = %v, want %v", got, want)
	}
	ts.Close()
	clk.Add(2 * time.Hour)
	return srv, st
}

// checkRefused checks that err is the refusal of a bound refresh token,
// that no token request was sent since before, and that the store still
// holds stored.
func checkRefused(t *testing.T, err error, srv *refreshtokentest.Server, before int, st *refreshtokentest.MemoryStore, stored *oauth2.Token) {
	t.Helper()
	if !errors.Is(err, refreshtoken.ErrDPoPKeyMismatch) || !errors.Is(err, refreshtoken.ErrRefreshRejected) {
		t.Fatalf("Token() = %v, want ErrDPoPKeyMismatch and ErrRefreshRejected", err)
	}
	for _, secret := range []string{stored.RefreshToken, stored.AccessToken} {
		if secret != "" && strings.Contains(err.Error(), secret) {
			t.Errorf("the error %q holds a token", err)
		}
	}
	if got := srv.Stats().TokenRequests; got != before {
		t.Errorf("TokenRequests = %d, want %d: the refresh token was sent", got, before)
	}
	if got := st.Stored(); got.RefreshToken != stored.RefreshToken || got.Extra(refreshtoken.ExtraDPoPThumbprint) != stored.Extra(refreshtoken.ExtraDPoPThumbprint) {
		t.Errorf("the store changed: refresh token same %v, thumbprint %v", got.RefreshToken == stored.RefreshToken, got.Extra(refreshtoken.ExtraDPoPThumbprint))
	}
}

// TestDPoPBoundRestart: a refresh token bound to a key, loaded from a
// store after a restart, is sent with that key, and not at all with
// another key or with none; the stored token stays for the right key.
func TestDPoPBoundRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(key crypto.Signer) []refreshtoken.Option // the restarted source's DPoP
		ok   bool
	}{
		{"same key", func(key crypto.Signer) []refreshtoken.Option {
			return []refreshtoken.Option{refreshtoken.WithDPoP(key)}
		}, true},
		{"another key", func(crypto.Signer) []refreshtoken.Option {
			return []refreshtoken.Option{refreshtoken.WithDPoP(newECKey(t))}
		}, false},
		{"another key type", func(crypto.Signer) []refreshtoken.Option {
			return []refreshtoken.Option{refreshtoken.WithDPoP(newEdKey(t))}
		}, false},
		{"no DPoP", func(crypto.Signer) []refreshtoken.Option { return nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(t0DPoP)
			key := newECKey(t)
			srv, st := boundStore(t, clk, key)
			stored, before := st.Stored(), srv.Stats().TokenRequests
			opts := append(tc.opts(key), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
			ts := refreshtoken.New(context.Background(), srv.Config(), nil, opts...)
			_, err := ts.Token()
			if tc.ok {
				if err != nil {
					t.Fatalf("Token() = %v", err)
				}
				if got := srv.Stats().TokenRequests; got != before+1 {
					t.Errorf("TokenRequests = %d, want %d", got, before+1)
				}
				return
			}
			checkRefused(t, err, srv, before, st, stored)
			if _, err := ts.Token(); !errors.Is(err, refreshtoken.ErrDPoPKeyMismatch) || srv.Stats().TokenRequests != before {
				t.Errorf("second Token() = %v, with %d requests; want the same refusal, none sent", err, srv.Stats().TokenRequests-before)
			}
			// Nothing lost: the right key still refreshes from the store.
			right := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithDPoP(key), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
			if _, err := right.Token(); err != nil {
				t.Errorf("Token() with the bound key after the refusal = %v", err)
			}
		})
	}
}

// TestDPoPBoundSetToken: a token given to SetToken is bound to the key it
// names (ExtraDPoPThumbprint), or else to the source's, and saved so.
func TestDPoPBoundSetToken(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	key, other := newECKey(t), newECKey(t)
	st := refreshtokentest.NewMemoryStore(clk.Now, 0)
	ts := refreshtoken.New(context.Background(), srv.Config(), nil, refreshtoken.WithDPoP(key), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))

	if err := ts.SetToken(&oauth2.Token{RefreshToken: srv.NewRefreshToken("")}); err != nil {
		t.Fatal(err)
	}
	if got, want := st.Stored().Extra(refreshtoken.ExtraDPoPThumbprint), thumbOf(t, key); got != want {
		t.Errorf("after SetToken of an unbound token, stored thumbprint = %v, want the source's %v", got, want)
	}
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() = %v", err)
	}

	foreign := (&oauth2.Token{RefreshToken: srv.NewRefreshToken("")}).WithExtra(map[string]any{refreshtoken.ExtraDPoPThumbprint: thumbOf(t, other)})
	if err := ts.SetToken(foreign); err != nil {
		t.Fatal(err)
	}
	stored, before := st.Stored(), srv.Stats().TokenRequests
	if stored.Extra(refreshtoken.ExtraDPoPThumbprint) != thumbOf(t, other) {
		t.Errorf("stored thumbprint = %v, want the token's own", stored.Extra(refreshtoken.ExtraDPoPThumbprint))
	}
	_, err := ts.Token()
	checkRefused(t, err, srv, before, st, stored)
}

// TestDPoPBoundAudience: the binding is the group's: a refresh by an
// Audience sibling binds the stored token, and a restart with another key
// refuses it for the siblings too, with no request.
func TestDPoPBoundAudience(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := dpopServer(t, clk, false)
	key := newECKey(t)
	st := refreshtokentest.NewMemoryStore(clk.Now, 0)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithDPoP(key), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
	if _, err := ts.Audience("https://api2.example").Token(); err != nil {
		t.Fatalf("sibling Token() = %v", err)
	}
	if got, want := st.Stored().Extra(refreshtoken.ExtraDPoPThumbprint), thumbOf(t, key); got != want {
		t.Fatalf("stored thumbprint after a sibling's refresh = %v, want %v", got, want)
	}
	ts.Close()
	clk.Add(2 * time.Hour)

	stored, before := st.Stored(), srv.Stats().TokenRequests
	restarted := refreshtoken.New(context.Background(), srv.Config(), nil,
		refreshtoken.WithDPoP(newECKey(t)), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
	sib := restarted.Audience("https://api2.example")
	_, err := sib.Token()
	checkRefused(t, err, srv, before, st, stored)
	if _, err := restarted.Token(); !errors.Is(err, refreshtoken.ErrDPoPKeyMismatch) {
		t.Errorf("primary Token() after the sibling's refusal = %v, want ErrDPoPKeyMismatch", err)
	}
	if got := srv.Stats().TokenRequests; got != before {
		t.Errorf("TokenRequests = %d, want %d", got, before)
	}
}

// TestDPoPConfidentialKeyChange: a confidential client's refresh token is
// bound to its client authentication, not to its DPoP key (RFC 9449
// section 5): nothing binds it in the store, and a process restarted with
// a new key refreshes with it.
func TestDPoPConfidentialKeyChange(t *testing.T) {
	clk := newFakeClock(t0DPoP)
	srv := refreshtokentest.NewServer(refreshtokentest.Config{DPoP: true, Clock: clk.Now}) // with a client secret
	defer srv.Close()
	st := refreshtokentest.NewMemoryStore(clk.Now, 0)
	ts := refreshtoken.New(context.Background(), srv.Config(), &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithDPoP(newECKey(t)), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	if th, _ := st.Stored().Extra(refreshtoken.ExtraDPoPThumbprint).(string); th != "" {
		t.Errorf("a confidential client's stored token is bound to a key (%s), want none", th)
	}
	clk.Add(2 * time.Hour)
	restarted := refreshtoken.New(context.Background(), srv.Config(), nil,
		refreshtoken.WithDPoP(newECKey(t)), refreshtoken.WithStore(st), refreshtoken.WithClock(clk.Now))
	defer restarted.Close()
	if _, err := restarted.Token(); err != nil {
		t.Errorf("Token() after a restart with a new DPoP key = %v", err)
	}
	if s := srv.Stats(); s.Refreshes != 2 || s.ReuseEvents != 0 {
		t.Errorf("server stats = %+v, want 2 refreshes, no reuse", s)
	}
}
