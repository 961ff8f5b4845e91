package refreshtokentest

import (
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// deviceLifetime is how long a device code waits for approval, by the
// server's Clock: Auth0's 900 seconds.
const deviceLifetime = 15 * time.Minute

// deviceAuth is a device authorization (RFC 8628) that /oauth/device/code
// started.
type deviceAuth struct {
	userCode string
	scope    string
	expires  time.Time
	interval time.Duration // grows by 5 s at each slow_down (RFC 8628 §3.5)
	lastPoll time.Time     // zero before the first poll
	approved bool
	used     bool // the token was issued: the device code is spent
}

// serveDeviceCode is /oauth/device/code (RFC 8628 §3.1, §3.2). It knows
// the client by its client_id, as RFC 8628 does for a public client and as
// x/oauth2's DeviceAuth sends it; a secret sent anyway must be the right
// one. The token endpoint authenticates the client as for any grant.
func (s *Server) serveDeviceCode(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	status, body := s.deviceCode(r)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func (s *Server) deviceCode(r *http.Request) (int, map[string]any) {
	if r.Method != http.MethodPost {
		return oauthError(http.StatusMethodNotAllowed, "invalid_request", "Use POST.")
	}
	params, err := readParams(r)
	if err != nil {
		return oauthError(http.StatusBadRequest, "invalid_request", err.Error())
	}
	if _, _, basic := r.BasicAuth(); basic || params.Has("client_secret") {
		if status, body := s.authenticate(r, params); status != 0 {
			return status, body
		}
	} else if params.Get("client_id") != s.cfg.ClientID {
		return oauthError(http.StatusUnauthorized, "invalid_client", "Unknown client.")
	}
	d := &deviceAuth{userCode: userCode(), scope: params.Get("scope"), interval: s.cfg.DeviceInterval}
	device := "dc-" + rand.Text()
	s.mu.Lock()
	s.secret(device)
	d.expires = s.cfg.Clock().Add(deviceLifetime)
	s.devices[device] = d
	s.users[normalUserCode(d.userCode)] = d
	s.mu.Unlock()
	verify := s.URL + "/activate"
	return http.StatusOK, map[string]any{
		"device_code":               device,
		"user_code":                 d.userCode,
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?" + url.Values{"user_code": {d.userCode}}.Encode(),
		"expires_in":                int64(deviceLifetime / time.Second),
		"interval":                  int64(d.interval / time.Second),
	}
}

// userCode returns a user code such as "BCDF-GHJK": consonants only, as
// Auth0's, so that it spells no word and reads out unambiguously.
func userCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ"
	b := make([]byte, 0, 9)
	for i := range 8 {
		if i == 4 {
			b = append(b, '-')
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic("refreshtokentest: " + err.Error())
		}
		b = append(b, alphabet[n.Int64()])
	}
	return string(b)
}

// normalUserCode is a user code as typed by a person, upper-cased, without
// the dash or spaces.
func normalUserCode(c string) string {
	return strings.NewReplacer("-", "", " ", "").Replace(strings.ToUpper(c))
}

// ApproveDevice approves the device authorization of userCode, as a person
// who visits the verification page does, and reports whether the code
// was waiting for approval (known, not expired, not used).
func (s *Server) ApproveDevice(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.users[normalUserCode(userCode)]
	if d == nil || d.used || !s.cfg.Clock().Before(d.expires) {
		return false
	}
	d.approved = true
	return true
}

// serveActivate is the verification page: with a user_code, it approves
// the device at once, as a person who signed in and consented would;
// without, it asks for the code.
func (s *Server) serveActivate(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	code := r.URL.Query().Get("user_code")
	if code == "" {
		io.WriteString(w, `<!doctype html><title>Activate a device</title><form action="/activate">Code: <input name="user_code" autofocus> <button>Approve</button></form>`)
		return
	}
	if !s.ApproveDevice(code) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `<!doctype html><title>Unknown code</title><p>This code is unknown, expired or already used. <a href="/activate">Try another</a>.`)
		return
	}
	io.WriteString(w, `<!doctype html><title>Device approved</title><p>Device `+html.EscapeString(code)+` approved. Return to your device.`)
}

// deviceGrant answers grant_type=urn:ietf:params:oauth:grant-type:device_code
// (RFC 8628 §3.4, §3.5); called with mu held. Every request counts as a
// poll: one sooner than the interval after the previous poll is answered
// slow_down, and the interval grows by 5 seconds.
func (s *Server) deviceGrant(params url.Values, now time.Time) (int, map[string]any) {
	d := s.devices[params.Get("device_code")]
	switch {
	case d == nil || d.used:
		return oauthError(http.StatusBadRequest, "invalid_grant", "Invalid or used device code.")
	case !now.Before(d.expires):
		return oauthError(http.StatusBadRequest, "expired_token", "The device code has expired.")
	}
	last := d.lastPoll
	d.lastPoll = now
	switch {
	case !last.IsZero() && now.Sub(last) < d.interval:
		d.interval += 5 * time.Second
		return oauthError(http.StatusBadRequest, "slow_down", "Polling too fast.")
	case !d.approved:
		return oauthError(http.StatusBadRequest, "authorization_pending", "Waiting for the user to approve the device.")
	}
	d.used = true
	body, _ := s.login(d.scope, now)
	return http.StatusOK, body
}
