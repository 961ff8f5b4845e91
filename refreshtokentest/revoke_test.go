package refreshtokentest

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func revokeForm(s *Server, token string) url.Values {
	return url.Values{"token": {token}, "token_type_hint": {"refresh_token"}, "client_id": {s.cfg.ClientID}, "client_secret": {s.cfg.ClientSecret}}
}

// postRevoke sends form to the revocation endpoint and returns the status
// and body.
func postRevoke(t *testing.T, s *Server, form url.Values, basic bool) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.RevokeURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.cfg.ClientSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestRevokeEndpoint(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	rt1 := s.NewRefreshToken("offline_access")
	_, body := post(t, s, refreshForm(s, rt1), false)
	rt2 := body["refresh_token"].(string)

	// A bad client is refused, and revokes nothing.
	bad := revokeForm(s, rt2)
	bad.Set("client_secret", "wrong")
	if status, body, err := postRevoke(t, s, bad, false); err != nil || status != 401 || !strings.Contains(body, "invalid_client") {
		t.Errorf("revoke with a wrong secret = %d %q %v; want 401 invalid_client", status, body, err)
	}
	if _, alive := s.Newest(rt1); !alive {
		t.Fatal("a refused revocation revoked the family")
	}
	if status, body, err := postRevoke(t, s, url.Values{"client_id": {"test-client"}, "client_secret": {"test-secret"}}, false); err != nil || status != 400 {
		t.Errorf("revoke without a token = %d %q %v; want 400", status, body, err)
	}

	// The newest token, with HTTP Basic: 200, empty body, family revoked.
	form := revokeForm(s, rt2)
	form.Del("client_secret")
	form.Del("client_id")
	if status, body, err := postRevoke(t, s, form, true); err != nil || status != 200 || body != "" {
		t.Errorf("revoke = %d %q %v; want 200 and no body", status, body, err)
	}
	if _, alive := s.Newest(rt1); alive {
		t.Error("family alive after revocation")
	}
	if status, body := post(t, s, refreshForm(s, rt2), false); status != 403 || body["error"] != "invalid_grant" {
		t.Errorf("refresh with a revoked token = %d %v; want 403 invalid_grant", status, body)
	}
	// Again, and an unknown token: 200, as RFC 7009 says.
	for _, tok := range []string{rt2, "rt-unknown"} {
		if status, _, err := postRevoke(t, s, revokeForm(s, tok), false); err != nil || status != 200 {
			t.Errorf("revoke of a revoked or unknown token = %d %v; want 200", status, err)
		}
	}
	got := s.Stats()
	if got.RevokeRequests != 5 || got.Revocations != 1 || got.ReplacedSent != 0 {
		t.Errorf("stats = %+v; want 5 revoke requests, 1 revocation, no replaced token sent", got)
	}

	// A retired token, whose successor was delivered, is counted.
	rt3 := s.NewRefreshToken("offline_access")
	post(t, s, refreshForm(s, rt3), false)
	postRevoke(t, s, revokeForm(s, rt3), false)
	if got := s.Stats(); got.ReplacedSent != 1 || got.Revocations != 2 {
		t.Errorf("after revoking a retired token: stats = %+v; want ReplacedSent 1, Revocations 2", got)
	}
}

func TestRevokeFaults(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	rt := s.NewRefreshToken("offline_access")
	s.InjectRevoke(1, Fault{Status: 503, Header: http.Header{"Retry-After": {"7"}}})
	if status, body, err := postRevoke(t, s, revokeForm(s, rt), false); err != nil || status != 503 || !strings.Contains(body, "server_error") {
		t.Errorf("with a 503 injected = %d %q %v", status, body, err)
	}
	s.InjectRevoke(1, Fault{Drop: true})
	if _, _, err := postRevoke(t, s, revokeForm(s, rt), false); err == nil {
		t.Error("with a drop injected: no error")
	}
	if _, alive := s.Newest(rt); !alive {
		t.Fatal("a failed revocation revoked the family")
	}
	s.InjectRevoke(1, Fault{DropAfterRotate: true})
	if _, _, err := postRevoke(t, s, revokeForm(s, rt), false); err == nil {
		t.Error("with DropAfterRotate injected: no error")
	}
	if _, alive := s.Newest(rt); alive {
		t.Error("DropAfterRotate did not revoke the family")
	}
	// The token endpoint's faults are its own.
	s.Inject(-1, Fault{Status: 500})
	if status, _, err := postRevoke(t, s, revokeForm(s, rt), false); err != nil || status != 200 {
		t.Errorf("with a token endpoint fault = %d %v; want 200", status, err)
	}
	s.InjectRevoke(-1, Fault{Status: 500})
	s.Heal()
	if status, _, err := postRevoke(t, s, revokeForm(s, rt), false); err != nil || status != 200 {
		t.Errorf("after Heal = %d %v; want 200", status, err)
	}
	if got := s.Stats(); got.TokenRequests != 0 || got.RevokeRequests != 5 {
		t.Errorf("stats = %+v", got)
	}
}
