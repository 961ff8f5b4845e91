package refreshtokentest

import (
	"net/http"
	"slices"
)

// AccessAudience returns the audience an access token the server issued
// is for: the audience parameter of the refresh that issued it, "" for
// the default API (a refresh without one, or a login). ok is false for an
// access token the server never issued.
func (s *Server) AccessAudience(access string) (audience string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	audience, ok = s.audiences[access]
	return audience, ok
}

// AudienceRefreshes returns how many refreshes succeeded for audience (""
// for refreshes without one), in every family.
func (s *Server) AudienceRefreshes(audience string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.audienceRefreshes[audience]
}

// knownAudience reports whether the server issues access tokens for
// audience; called with mu held.
func (s *Server) knownAudience(audience string) bool {
	return s.cfg.Audiences == nil || audience == "" || slices.Contains(s.cfg.Audiences, audience)
}

// forAudience reports whether access, a valid access token, is for the
// audience that r's query names, if it names one; called with mu held.
func (s *Server) forAudience(r *http.Request, access string) bool {
	q := r.URL.Query()
	return !q.Has("audience") || s.audiences[access] == q.Get("audience")
}
