package refreshtokentest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestDeviceFlow: x/oauth2's DeviceAuth, a person visiting the complete
// verification URI, and DeviceAccessToken; the refresh token works.
func TestDeviceFlow(t *testing.T) {
	clock := NewClock(time.Unix(1_800_000_000, 0))
	s := NewServer(Config{Clock: clock.Now, DeviceInterval: time.Second})
	defer s.Close()
	conf := s.Config()
	conf.Scopes = []string{"openid", "offline_access"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	da, err := conf.DeviceAuth(ctx, oauth2.SetAuthURLParam("audience", "https://api"))
	if err != nil {
		t.Fatal(err)
	}
	if da.VerificationURI != s.URL+"/activate" || !strings.Contains(da.VerificationURIComplete, url.QueryEscape(da.UserCode)) ||
		da.Interval != 1 || da.DeviceCode == "" || da.Expiry.IsZero() {
		t.Fatalf("DeviceAuth = %+v", da)
	}
	resp, err := http.Get(da.VerificationURIComplete)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("verification page: %s", resp.Status)
	}
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.Extra("id_token") == nil || tok.Extra("scope") != "openid offline_access" {
		t.Errorf("token %+v, want a refresh token, an id_token, the scope", tok)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Errorf("refreshing with the device's refresh token: %v", err)
	}
	// The device code is single-use.
	_, err = conf.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("second DeviceAccessToken: %v, want invalid_grant", err)
	}
	if got := s.Stats(); got.Logins != 1 || got.Refreshes != 1 {
		t.Errorf("stats %+v, want 1 login, 1 refresh", got)
	}
}

// TestDevicePolling: pending until approved, slow_down when polled sooner
// than the interval (which then grows by 5 s), the token once.
func TestDevicePolling(t *testing.T) {
	clock := NewClock(time.Unix(1_800_000_000, 0))
	s := NewServer(Config{Clock: clock.Now, DeviceInterval: 2 * time.Second})
	defer s.Close()
	da := deviceCode(t, s, url.Values{"client_id": {"test-client"}, "scope": {"offline_access"}})
	steps := []struct {
		wait    time.Duration // on the clock, before the poll
		approve bool
		status  int
		code    string
	}{
		{status: 400, code: "authorization_pending"},
		{wait: 2 * time.Second, status: 400, code: "authorization_pending"},
		{wait: time.Second, status: 400, code: "slow_down"},     // interval now 7 s
		{wait: 6 * time.Second, status: 400, code: "slow_down"}, // interval now 12 s
		{wait: 12 * time.Second, status: 400, code: "authorization_pending"},
		{wait: 12 * time.Second, approve: true, status: 200},
		{wait: 12 * time.Second, status: 400, code: "invalid_grant"}, // used
	}
	for i, st := range steps {
		clock.Add(st.wait)
		if st.approve && !s.ApproveDevice(strings.ToLower(da["user_code"].(string))) {
			t.Fatalf("step %d: ApproveDevice refused a waiting code", i)
		}
		status, body := post(t, s, deviceForm(da["device_code"].(string)), false)
		if status != st.status || (st.code != "" && body["error"] != st.code) {
			t.Fatalf("step %d: %d %v, want %d %s", i, status, body, st.status, st.code)
		}
		if st.status == 200 && (body["refresh_token"] == nil || body["access_token"] == nil) {
			t.Fatalf("step %d: %v, want tokens", i, body)
		}
	}
	if s.ApproveDevice(da["user_code"].(string)) {
		t.Error("ApproveDevice accepted a used code")
	}
}

// TestDeviceRefusals: an expired device code, a wrong client, an unknown
// code, a verification page for an unknown or expired code.
func TestDeviceRefusals(t *testing.T) {
	clock := NewClock(time.Unix(1_800_000_000, 0))
	s := NewServer(Config{Clock: clock.Now})
	defer s.Close()
	if status, body := post(t, s, url.Values{"client_id": {"other"}}, false, s.DeviceAuthURL); status != 401 || body["error"] != "invalid_client" {
		t.Errorf("device code for another client: %d %v, want 401 invalid_client", status, body)
	}
	if status, body := post(t, s, url.Values{"client_id": {"test-client"}, "client_secret": {"nope"}}, false, s.DeviceAuthURL); status != 401 || body["error"] != "invalid_client" {
		t.Errorf("device code with a wrong secret: %d %v, want 401 invalid_client", status, body)
	}
	da := deviceCode(t, s, url.Values{"client_id": {"test-client"}})
	if status, body := post(t, s, deviceForm("dc-forged"), false); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("unknown device code: %d %v, want invalid_grant", status, body)
	}
	f := deviceForm(da["device_code"].(string))
	f.Set("client_secret", "nope")
	if status, body := post(t, s, f, false); status != 401 || body["error"] != "invalid_client" {
		t.Errorf("wrong client secret: %d %v, want invalid_client", status, body)
	}
	if got := activate(t, s.URL+"/activate?user_code=BCDF-GHJK"); got != http.StatusBadRequest {
		t.Errorf("verification page for an unknown code: %d, want 400", got)
	}
	clock.Add(deviceLifetime)
	if got := activate(t, da["verification_uri_complete"].(string)); got != http.StatusBadRequest {
		t.Errorf("verification page for an expired code: %d, want 400", got)
	}
	if status, body := post(t, s, deviceForm(da["device_code"].(string)), false); status != 400 || body["error"] != "expired_token" {
		t.Errorf("expired device code: %d %v, want expired_token", status, body)
	}
	if got := activate(t, s.URL+"/activate"); got != http.StatusOK {
		t.Errorf("verification page without a code: %d, want 200 (a form)", got)
	}
}

func deviceCode(t *testing.T, s *Server, form url.Values) map[string]any {
	t.Helper()
	status, da := post(t, s, form, false, s.DeviceAuthURL)
	if status != 200 {
		t.Fatalf("device code: %d %v", status, da)
	}
	return da
}

func deviceForm(code string) url.Values {
	return url.Values{"grant_type": {deviceGrantType}, "device_code": {code}, "client_id": {"test-client"}, "client_secret": {"test-secret"}}
}

func activate(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
