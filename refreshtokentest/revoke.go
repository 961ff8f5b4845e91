package refreshtokentest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// The revocation endpoint, /oauth/revoke, as Auth0 serves it (RFC 7009):
// a POST with the client's authentication and token, the refresh token to
// revoke. It revokes the token's whole family, as Auth0 revokes the grant,
// and answers 200 with an empty body, for an unknown or already revoked
// token too (RFC 7009 section 2.2). Access tokens already issued stay
// valid until they expire, as Auth0's JWTs do.

// InjectRevoke makes the next n requests to the revocation endpoint get
// f, as [Server.Inject] does for the token endpoint; n < 0 until Heal.
// Of a Fault, the revocation endpoint honours Status, Error, Header,
// Latency and Drop; DropAfterRotate revokes the family, then closes the
// connection without an answer (the client cannot tell it was revoked).
// The other fields are ignored.
func (s *Server) InjectRevoke(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokes = append(s.revokes, injected{fault: f, left: n})
}

// serveRevoke is /oauth/revoke.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if s.cfg.OnRevokeRequest != nil {
		s.cfg.OnRevokeRequest(r)
	}
	s.mu.Lock()
	s.stats.RevokeRequests++
	f := next(&s.revokes)
	s.mu.Unlock()

	if f.Latency > 0 {
		b, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(b))
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return
		}
	}
	if f.Drop {
		drop(w)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	status, body := s.revoke(r, f)
	for k, vs := range f.Header {
		h[k] = vs
	}
	if f.DropAfterRotate {
		drop(w)
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// revoke answers one revocation request: 200 and no body on success.
// Called with mu held.
func (s *Server) revoke(r *http.Request, f Fault) (status int, body map[string]any) {
	if r.Method != http.MethodPost {
		return oauthError(http.StatusMethodNotAllowed, "invalid_request", "Use POST.")
	}
	params, err := readParams(r)
	if err != nil {
		return oauthError(http.StatusBadRequest, "invalid_request", err.Error())
	}
	if status, body := s.authenticate(r, params); status != 0 {
		return status, body
	}
	if f.Status != 0 {
		return oauthError(f.Status, f.code(), "Injected fault.")
	}
	token := params.Get("token")
	if token == "" {
		return oauthError(http.StatusBadRequest, "invalid_request", "Missing required parameter: token")
	}
	if rt := s.refresh[token]; rt != nil {
		if rt.retired && rt.delivered {
			s.stats.ReplacedSent++
		}
		if !rt.family.revoked {
			rt.family.revoked = true
			s.stats.Revocations++
		}
	}
	return http.StatusOK, nil
}
