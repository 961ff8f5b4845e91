package refreshtokentest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// apiStatus calls /api with access, asking for audience if want is set.
func apiStatus(t *testing.T, s *Server, access string, audience ...string) int {
	t.Helper()
	u := s.APIURL
	if len(audience) > 0 {
		u += "?" + url.Values{"audience": audience}.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAudiences: the audience parameter of a refresh chooses the access
// token's audience, /api checks it when asked to, unknown audiences are
// refused, and rotation and reuse detection span the family, whatever
// the audience.
func TestAudiences(t *testing.T) {
	s := NewServer(Config{Audiences: []string{"https://a", "https://b"}, JWTAccessTokens: true})
	defer s.Close()
	rt := s.NewRefreshToken("offline_access read:a read:b")
	issued := map[string]string{} // access token to audience
	for _, aud := range []string{"https://a", "https://b", "", "https://a"} {
		form := refreshForm(s, rt)
		if aud != "" {
			form.Set("audience", aud)
		}
		status, body := post(t, s, form, false)
		if status != 200 {
			t.Fatalf("refresh for %q: %d %v", aud, status, body)
		}
		at := body["access_token"].(string)
		if got, ok := s.AccessAudience(at); !ok || got != aud {
			t.Errorf("AccessAudience(token for %q) = %q, %v", aud, got, ok)
		}
		issued[at] = aud
		rt = body["refresh_token"].(string)
	}
	for at, aud := range issued {
		if got := apiStatus(t, s, at); got != 200 {
			t.Errorf("/api with the token for %q, no audience asked = %d, want 200", aud, got)
		}
		for _, want := range []string{"https://a", "https://b", ""} {
			if got, wantStatus := apiStatus(t, s, at, want), map[bool]int{true: 200, false: 401}[want == aud]; got != wantStatus {
				t.Errorf("/api?audience=%q with the token for %q = %d, want %d", want, aud, got, wantStatus)
			}
		}
	}
	if _, ok := s.AccessAudience("at-forged"); ok {
		t.Error("AccessAudience(forged) ok, want not")
	}
	for aud, want := range map[string]int{"https://a": 2, "https://b": 1, "": 1, "https://c": 0} {
		if got := s.AudienceRefreshes(aud); got != want {
			t.Errorf("AudienceRefreshes(%q) = %d, want %d", aud, got, want)
		}
	}

	form := refreshForm(s, rt)
	form.Set("audience", "https://c")
	if status, body := post(t, s, form, false); status != 403 || body["error"] != "access_denied" {
		t.Errorf("refresh for an unknown audience: %d %v, want 403 access_denied", status, body)
	}
	if newest, alive := s.Newest(rt); newest != rt || !alive {
		t.Error("a refused audience rotated or revoked the family")
	}

	// A retired refresh token sent for another audience is a reuse of
	// the family.
	form = refreshForm(s, rt)
	form.Set("audience", "https://b")
	_, body := post(t, s, form, false)
	form.Set("audience", "https://a")
	if status, body := post(t, s, form, false); status != 403 || body["error"] != "invalid_grant" {
		t.Errorf("retired token for another audience: %d %v, want 403 invalid_grant", status, body)
	}
	if _, alive := s.Newest(body["refresh_token"].(string)); alive {
		t.Error("family alive after a reuse across audiences")
	}
	if got := s.Stats().ReuseEvents; got != 1 {
		t.Errorf("ReuseEvents = %d, want 1", got)
	}
	for at, aud := range issued {
		var claims struct {
			Aud string `json:"aud"`
		}
		parts := strings.Split(at, ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil || json.Unmarshal(payload, &claims) != nil || claims.Aud != aud {
			t.Errorf("JWT access token for %q: aud claim %q (%v)", aud, claims.Aud, err)
		}
	}
}
