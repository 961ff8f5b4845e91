package refreshtokentest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// token answers one token request; called with mu held. rotated is the
// refresh token that the answer replaces, if it does. reissue answers a
// refresh with the family's last access token, if it is still valid.
func (s *Server) token(r *http.Request, reissue bool) (status int, body map[string]any, rotated *refreshState) {
	if r.Method != http.MethodPost {
		status, body = oauthError(http.StatusMethodNotAllowed, "invalid_request", "Use POST.")
		return status, body, nil
	}
	params, err := readParams(r)
	if err != nil {
		status, body = oauthError(http.StatusBadRequest, "invalid_request", err.Error())
		return status, body, nil
	}
	var jkt string
	if s.cfg.DPoP {
		var code string
		if jkt, code = s.proofOf(r, ""); code != "" {
			status, body = s.dpopError(code)
			return status, body, nil
		}
	}
	if status, body := s.authenticate(r, params); status != 0 {
		return status, body, nil
	}
	s.x5t = s.bindingFor(r)
	defer func() { s.x5t = "" }()
	now := s.cfg.Clock()
	switch gt := params.Get("grant_type"); gt {
	case "refresh_token":
		return s.refreshGrant(params, now, reissue, jkt)
	case "authorization_code":
		status, body = s.codeGrant(params, now)
	case deviceGrantType:
		status, body = s.deviceGrant(params, now)
	default:
		status, body = oauthError(http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("Unsupported grant type: %s", gt))
	}
	return status, body, nil
}

// refreshGrant answers grant_type=refresh_token; called with mu held.
// jkt is the thumbprint of the request's DPoP key, "" without DPoP.
func (s *Server) refreshGrant(params url.Values, now time.Time, reissue bool, jkt string) (status int, body map[string]any, rotated *refreshState) {
	rt := s.refresh[params.Get("refresh_token")]
	if rt != nil && rt.retired && rt.delivered {
		s.stats.ReplacedSent++
	}
	switch {
	case rt == nil || rt.family.revoked:
		status, body = oauthError(http.StatusForbidden, "invalid_grant", "Unknown or invalid refresh token.")
		return status, body, nil
	case rt.family.jkt != "" && rt.family.jkt != jkt:
		// Checked before reuse: a thief's request with another key
		// changes nothing.
		s.stats.DPoPRejected++
		status, body = oauthError(http.StatusBadRequest, "invalid_grant", "Refresh token is bound to another DPoP key.")
		return status, body, nil
	case rt.retired && rt.successor != nil && now.Before(rt.retiredAt.Add(s.cfg.ReuseInterval)) && !rt.successor.retired:
		// Within the reuse interval: the successor, never used, is
		// retired in its place, and rotation goes on from rt.
		s.stats.ReuseTolerated++
		rt.successor.retired, rt.successor.retiredAt = true, now
	case rt.retired:
		s.stats.ReuseEvents++
		rt.family.revoked = true
		status, body = oauthError(http.StatusForbidden, "invalid_grant", "Unknown or invalid refresh token.")
		return status, body, nil
	}
	if s.refreshExpired(rt, now) {
		s.stats.RefreshExpired++
		status, body = oauthError(http.StatusForbidden, "invalid_grant", "Unknown or invalid refresh token.")
		return status, body, nil
	}
	scope := rt.family.scope
	if req := params.Get("scope"); req != "" {
		granted := strings.Fields(rt.family.scope)
		for _, sc := range strings.Fields(req) {
			if !slices.Contains(granted, sc) {
				status, body = oauthError(http.StatusForbidden, "invalid_scope", fmt.Sprintf("Scope %q was not granted.", sc))
				return status, body, nil
			}
		}
		scope = req
	}
	audience := params.Get("audience")
	if !s.knownAudience(audience) {
		status, body = oauthError(http.StatusForbidden, "access_denied", fmt.Sprintf("Service not found: %s", audience))
		return status, body, nil
	}

	body = s.issue(rt.family, scope, audience, now, reissue)
	if jkt != "" {
		body["token_type"] = "DPoP"
		s.accessJKT[body["access_token"].(string)] = jkt
		if s.cfg.Public {
			rt.family.jkt = jkt
		}
	}
	s.audienceRefreshes[audience]++
	s.stats.Refreshes++
	if !rt.issuedAt.IsZero() {
		if age := now.Sub(rt.issuedAt); s.stats.YoungestRefreshed == 0 || age < s.stats.YoungestRefreshed {
			s.stats.YoungestRefreshed = age
		}
	}
	if !s.cfg.NoRotation {
		next := s.secret("rt-" + rand.Text())
		rt.successor = &refreshState{family: rt.family, issuedAt: now}
		rt.retired, rt.retiredAt, rt.delivered = true, now, false
		s.refresh[next] = rt.successor
		rt.family.newest = next
		body["refresh_token"] = next
		rotated = rt
		s.putRefreshLife(body, rt.successor, now)
	} else {
		rt.lastUsed = now
		s.putRefreshLife(body, rt, now)
	}
	return http.StatusOK, body, rotated
}

// issue returns the answer to a grant for fam: a new access token for
// audience ("" for the default), or with reissue the family's last one if
// it is still valid and for audience, and an id_token if scope holds
// openid. Called with mu held.
func (s *Server) issue(fam *family, scope, audience string, now time.Time, reissue bool) map[string]any {
	secs := max(int64(s.cfg.Lifetime/time.Second), 1)
	exp := now.Add(time.Duration(secs) * time.Second)
	access := "at-" + rand.Text()
	if s.cfg.JWTAccessTokens {
		claims := map[string]any{"exp": exp.Unix(), "iat": now.Unix(), "jti": rand.Text()}
		if audience != "" {
			claims["aud"] = audience
		}
		if s.x5t != "" {
			claims["cnf"] = map[string]any{"x5t#S256": s.x5t}
		}
		access = jwt(claims)
	}
	s.secret(access)
	s.audiences[access] = audience
	if s.x5t != "" {
		s.boundTo[access] = s.x5t
	}
	if prev, ok := s.access[fam.access]; reissue && ok && now.Before(prev) && s.audiences[fam.access] == audience {
		access, exp = fam.access, prev
		secs = max(int64(prev.Sub(now)/time.Second), 1)
	}
	if s.cfg.RevokeReplacedAccess && fam.access != access {
		delete(s.access, fam.access)
	}
	fam.access = access
	s.access[access] = exp
	body := map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"scope":        scope,
	}
	switch {
	case s.cfg.OmitExpiresIn:
	case s.cfg.ExpiresInString:
		body["expires_in"] = fmt.Sprint(secs)
	default:
		body["expires_in"] = secs
	}
	if hasScope(scope, "openid") {
		body["id_token"] = s.secret(jwt(map[string]any{"sub": "user-1", "aud": s.cfg.ClientID, "iat": now.Unix(), "exp": exp.Unix()}))
	}
	return body
}

// login answers a grant that a user approved (authorization code or
// device): a new family, its first access token, and a refresh token only
// if scope holds offline_access, as Auth0 issues one. Called with mu held.
func (s *Server) login(scope string, now time.Time) (map[string]any, *family) {
	fam := &family{started: now, scope: scope}
	body := s.issue(fam, scope, "", now, false)
	if hasScope(scope, "offline_access") {
		rt := s.secret("rt-" + rand.Text())
		s.refresh[rt] = &refreshState{family: fam}
		fam.newest = rt
		body["refresh_token"] = rt
		s.putRefreshLife(body, s.refresh[rt], now)
	}
	s.stats.Logins++
	return body, fam
}

// hasScope reports whether the space-separated scope holds one.
func hasScope(scope, one string) bool {
	return slices.Contains(strings.Fields(scope), one)
}

// authenticate checks the client (RFC 6749 2.3.1): the secret in HTTP Basic
// (id and secret each form-encoded) or in the body, never in both; or its
// certificate, with ClientCertSubject or ClientCertDNS; or a signed client
// assertion, with ClientKey. It
// returns status 0 when the client is authenticated.
func (s *Server) authenticate(r *http.Request, params url.Values) (int, map[string]any) {
	if s.cfg.certAuth() {
		return s.authenticateCert(r, params)
	}
	if s.cfg.ClientKey != nil {
		return s.authenticateAssertion(r, params)
	}
	id, secret := params.Get("client_id"), params.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		if params.Has("client_secret") {
			return oauthError(http.StatusBadRequest, "invalid_request", "Use one client authentication method.")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(bid)
		secret, err2 = url.QueryUnescape(bsecret)
		if err1 != nil || err2 != nil {
			return oauthError(http.StatusUnauthorized, "invalid_client", "Malformed Basic credentials.")
		}
	}
	if id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
		return oauthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed.")
	}
	return 0, nil
}

// readParams reads a form or JSON body, as Auth0 accepts both.
func readParams(r *http.Request) (url.Values, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, errors.New("Malformed form body.")
		}
		return r.PostForm, nil
	case "application/json":
		var m map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&m); err != nil {
			return nil, errors.New("Malformed JSON body.")
		}
		v := url.Values{}
		for k, x := range m {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("Parameter %s must be a string.", k)
			}
			v.Set(k, s)
		}
		return v, nil
	}
	return nil, fmt.Errorf("Unsupported Content-Type %q.", mt)
}
