package refreshtokentest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// post sends a form to the token endpoint, or to the URL given, and
// decodes the JSON answer.
func post(t *testing.T, s *Server, form url.Values, basic bool, to ...string) (int, map[string]any) {
	t.Helper()
	u := s.TokenURL
	if len(to) > 0 {
		u = to[0]
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

func refreshForm(s *Server, rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {s.cfg.ClientID}, "client_secret": {s.cfg.ClientSecret}}
}

func TestReuseRevokesFamily(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	rt1 := s.NewRefreshToken("offline_access")
	status, body := post(t, s, refreshForm(s, rt1), false)
	if status != 200 {
		t.Fatalf("first refresh: %d %v", status, body)
	}
	rt2 := body["refresh_token"].(string)
	if rt2 == rt1 {
		t.Fatal("refresh token not rotated")
	}
	// rt1 again: reuse. The family, rt2 included, is revoked.
	if status, body := post(t, s, refreshForm(s, rt1), false); status != 403 || body["error"] != "invalid_grant" {
		t.Errorf("reused token: %d %v, want 403 invalid_grant", status, body)
	}
	if status, body := post(t, s, refreshForm(s, rt2), false); status != 403 || body["error"] != "invalid_grant" {
		t.Errorf("newest token after reuse: %d %v, want 403 invalid_grant", status, body)
	}
	if got := s.Stats(); got.ReuseEvents != 1 || got.Refreshes != 1 || got.TokenRequests != 3 || got.Rejected != 2 {
		t.Errorf("stats = %+v", got)
	}
}

func TestClientAuthentication(t *testing.T) {
	s := NewServer(Config{ClientSecret: "s p@ce:&"})
	defer s.Close()
	tests := []struct {
		name   string
		form   func(rt string) url.Values
		basic  bool
		status int
		code   string
	}{
		{name: "secret in body", form: func(rt string) url.Values { return refreshForm(s, rt) }, status: 200},
		{name: "secret in Basic", form: func(rt string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		}, basic: true, status: 200},
		{name: "both", form: func(rt string) url.Values { return refreshForm(s, rt) }, basic: true, status: 400, code: "invalid_request"},
		{name: "wrong secret", form: func(rt string) url.Values {
			f := refreshForm(s, rt)
			f.Set("client_secret", "nope")
			return f
		}, status: 401, code: "invalid_client"},
		{name: "wrong grant", form: func(rt string) url.Values {
			f := refreshForm(s, rt)
			f.Set("grant_type", "password")
			return f
		}, status: 400, code: "unsupported_grant_type"},
		{name: "unknown refresh token", form: func(string) url.Values { return refreshForm(s, "rt-unknown") }, status: 403, code: "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, s, tt.form(s.NewRefreshToken("")), tt.basic)
			if status != tt.status || (tt.code != "" && body["error"] != tt.code) {
				t.Errorf("got %d %v, want %d %s", status, body, tt.status, tt.code)
			}
		})
	}
}

func TestAPIRejectsExpiredTokens(t *testing.T) {
	var now atomic.Int64 // UNIX seconds, read by the server's goroutines
	now.Store(1_800_000_000)
	s := NewServer(Config{Clock: func() time.Time { return time.Unix(now.Load(), 0) }, Lifetime: time.Minute})
	defer s.Close()
	_, body := post(t, s, refreshForm(s, s.NewRefreshToken("")), false)
	at := body["access_token"].(string)
	call := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, s.APIURL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call(at); got != 200 {
		t.Errorf("fresh token: %d, want 200", got)
	}
	if got := call("at-forged"); got != 401 {
		t.Errorf("unknown token: %d, want 401", got)
	}
	now.Add(60)
	if got := call(at); got != 401 {
		t.Errorf("expired token: %d, want 401", got)
	}
	if got := s.Stats(); got.APICalls != 3 || got.APIRejected != 2 {
		t.Errorf("stats = %+v", got)
	}
}

// TestReuseInterval: within the interval the previous refresh token is
// accepted once more and rotation goes on from it; the token it replaced,
// sent again, is a reuse that revokes the family (Auth0: "only the
// previous token can be reused").
func TestReuseInterval(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewServer(Config{ReuseInterval: time.Minute, Clock: func() time.Time { return now }})
	defer s.Close()
	rt0 := s.NewRefreshToken("")
	_, body := post(t, s, refreshForm(s, rt0), false)
	rtA := body["refresh_token"].(string)
	now = now.Add(10 * time.Second)
	status, body := post(t, s, refreshForm(s, rt0), false)
	if status != 200 {
		t.Fatalf("previous token within the interval: %d %v, want 200", status, body)
	}
	rtB := body["refresh_token"].(string)
	if status, body := post(t, s, refreshForm(s, rtA), false); status != 403 {
		t.Errorf("the token the tolerated reuse replaced: %d %v, want 403", status, body)
	}
	if status, _ := post(t, s, refreshForm(s, rtB), false); status != 403 {
		t.Errorf("the family's newest token after a reuse: %d, want 403 (revoked)", status)
	}
	if got := s.Stats(); got.ReuseTolerated != 1 || got.ReuseEvents != 1 {
		t.Errorf("stats = %+v, want 1 tolerated, 1 reuse event", got)
	}
}

// TestYoungestRefreshed reports the age of the youngest refresh token used,
// counting only those issued by a refresh.
func TestYoungestRefreshed(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewServer(Config{Clock: func() time.Time { return now }})
	defer s.Close()
	rt := s.NewRefreshToken("")
	for _, age := range []time.Duration{time.Hour, 50 * time.Minute, 55 * time.Minute} {
		now = now.Add(age)
		_, body := post(t, s, refreshForm(s, rt), false)
		rt = body["refresh_token"].(string)
	}
	if got := s.Stats().YoungestRefreshed; got != 50*time.Minute {
		t.Errorf("YoungestRefreshed = %v, want 50m (the first refresh, of a token not issued by a refresh, does not count)", got)
	}
}

// TestNewestAndAccessExpiry: Newest follows rotation, an undelivered one
// included, and reports revocation; AccessExpiry knows only issued tokens.
func TestNewestAndAccessExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := NewServer(Config{Lifetime: time.Minute, Clock: func() time.Time { return now }})
	defer s.Close()
	if newest, alive := s.Newest("rt-unknown"); newest != "" || alive {
		t.Errorf("Newest(unknown) = %q, %v, want \"\", false", newest, alive)
	}
	rt0 := s.NewRefreshToken("")
	if newest, alive := s.Newest(rt0); newest != rt0 || !alive {
		t.Errorf("Newest(new family) = %q, %v, want itself, alive", newest, alive)
	}
	_, body := post(t, s, refreshForm(s, rt0), false)
	rt1 := body["refresh_token"].(string)
	if exp, ok := s.AccessExpiry(body["access_token"].(string)); !ok || !exp.Equal(now.Add(time.Minute)) {
		t.Errorf("AccessExpiry(issued) = %v, %v, want %v, true", exp, ok, now.Add(time.Minute))
	}
	if _, ok := s.AccessExpiry("at-forged"); ok {
		t.Error("AccessExpiry(forged) ok, want false")
	}
	s.Inject(1, Fault{DropAfterRotate: true})
	req, _ := http.NewRequest(http.MethodPost, s.TokenURL, strings.NewReader(refreshForm(s, rt1).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("DropAfterRotate answered")
	}
	for _, rt := range []string{rt0, rt1} {
		if newest, alive := s.Newest(rt); newest == rt0 || newest == rt1 || !alive {
			t.Errorf("Newest(%s) after an undelivered rotation = %q, %v, want the undelivered token, alive", rt, newest, alive)
		}
	}
	s.Revoke(rt0)
	if _, alive := s.Newest(rt1); alive {
		t.Error("Newest after Revoke: alive, want revoked")
	}
}

// TestSecrets: every secret of an answer, and the client's, is listed.
func TestSecrets(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	rt := s.NewRefreshToken("openid offline_access")
	status, body := post(t, s, refreshForm(s, rt), false)
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, body)
	}
	secrets := s.Secrets()
	for _, want := range []any{rt, body["refresh_token"], body["access_token"], body["id_token"], "test-secret"} {
		if w, _ := want.(string); w == "" || !slices.Contains(secrets, w) {
			t.Errorf("Secrets() = %q, want it to hold %q", secrets, want)
		}
	}
}
