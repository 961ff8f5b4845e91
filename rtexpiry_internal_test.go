package refreshtoken

import (
	"net/http"
	"testing"
	"time"
)

// TestRefreshLifeFields: the lifetime of the new refresh token, from the
// fields servers send it in, with hostile values, and from the lifetimes
// the user states: what parse records in the token's Extra.
func TestRefreshLifeFields(t *testing.T) {
	sent := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	family := sent.Add(-20 * 24 * time.Hour)
	tests := []struct {
		name        string
		body        string // after access_token and refresh_token
		contentType string
		lifetimes   refreshLifetimes
		family      time.Time
		want        time.Time // zero: no expiry known
		wantFamily  time.Time
		reason      string
	}{
		{name: "none", want: time.Time{}},
		{name: "Azure AD, GitHub", body: `"refresh_token_expires_in":86400`, want: sent.Add(24 * time.Hour)},
		{name: "Keycloak", body: `"refresh_expires_in":1800`, want: sent.Add(30 * time.Minute)},
		{name: "Intuit", body: `"x_refresh_token_expires_in":8726400`, want: sent.Add(8726400 * time.Second)},
		{name: "string", body: `"refresh_token_expires_in":" 3600 "`, want: sent.Add(time.Hour)},
		{name: "fraction", body: `"refresh_token_expires_in":1.5`, want: sent.Add(1500 * time.Millisecond)},
		{name: "form", contentType: "application/x-www-form-urlencoded", body: "refresh_expires_in=60", want: sent.Add(time.Minute)},
		{name: "first name wins", body: `"refresh_token_expires_in":60,"refresh_expires_in":120`, want: sent.Add(time.Minute)},
		{name: "zero", body: `"refresh_expires_in":0`, reason: "Keycloak's offline tokens: no limit"},
		{name: "negative", body: `"refresh_token_expires_in":-5`, reason: "nonsense is no limit, not an expired token"},
		{name: "negative string", body: `"refresh_token_expires_in":"-5"`},
		{name: "huge", body: `"refresh_token_expires_in":1e300`, reason: "past 100 years: no limit, not an overflow"},
		{name: "past 100 years", body: `"refresh_token_expires_in":3200000000`},
		{name: "NaN string", body: `"refresh_token_expires_in":"NaN"`},
		{name: "Inf string", body: `"refresh_token_expires_in":"Inf"`},
		{name: "not a number", body: `"refresh_token_expires_in":"soon"`},
		{name: "bool", body: `"refresh_token_expires_in":true`},
		{name: "object", body: `"refresh_token_expires_in":{"s":60}`},
		{name: "null", body: `"refresh_token_expires_in":null`},
		{name: "forged expiry field", body: `"refresh_token_expiry":"2000-01-01T00:00:00Z","refresh_token_family_issued":"2000-01-01T00:00:00Z"`,
			reason: "the server's field of that name is not taken for the source's knowledge"},
		{name: "forged expiry field, form", contentType: "application/x-www-form-urlencoded", body: "refresh_token_expiry=2000-01-01T00:00:00Z"},
		{name: "inactivity", lifetimes: refreshLifetimes{inactivity: 15 * 24 * time.Hour}, want: sent.Add(15 * 24 * time.Hour)},
		{name: "absolute from the family", lifetimes: refreshLifetimes{absolute: 30 * 24 * time.Hour}, family: family,
			want: family.Add(30 * 24 * time.Hour), wantFamily: family},
		{name: "absolute, family not known", lifetimes: refreshLifetimes{absolute: 30 * 24 * time.Hour},
			want: sent.Add(30 * 24 * time.Hour), wantFamily: sent, reason: "counted from the request: no earlier than the truth"},
		{name: "absolute binds", lifetimes: refreshLifetimes{absolute: 30 * 24 * time.Hour, inactivity: 15 * 24 * time.Hour}, family: family,
			want: family.Add(30 * 24 * time.Hour), wantFamily: family},
		{name: "inactivity binds", lifetimes: refreshLifetimes{absolute: 30 * 24 * time.Hour, inactivity: 5 * 24 * time.Hour}, family: family,
			want: sent.Add(5 * 24 * time.Hour), wantFamily: family},
		{name: "server's shorter", body: `"refresh_token_expires_in":3600`, lifetimes: refreshLifetimes{inactivity: 15 * 24 * time.Hour},
			want: sent.Add(time.Hour), reason: "the earliest limit known wins"},
		{name: "family after the request", lifetimes: refreshLifetimes{absolute: time.Hour}, family: sent.Add(time.Hour),
			want: sent.Add(time.Hour), wantFamily: sent, reason: "a family cannot start after its refresh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, body := tt.contentType, ""
			if ct == "" {
				ct = "application/json"
				body = `{"access_token":"at","refresh_token":"rt2","expires_in":60`
				if tt.body != "" {
					body += "," + tt.body
				}
				body += "}"
			} else {
				body = "access_token=at&refresh_token=rt2&expires_in=60&" + tt.body
			}
			g := &grant{lifetimes: &tt.lifetimes}
			resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {ct}}}
			tok, _, err := g.parse(resp, []byte(body), sent, "rt1", tt.family)
			if err != nil {
				t.Fatalf("parse() error = %v", err)
			}
			gotFamily, got, ok := lifeOf(tok)
			if !got.Equal(tt.want) || ok != !tt.want.IsZero() || !gotFamily.Equal(tt.wantFamily) {
				t.Errorf("refresh token expiry, family = %v, %v; want %v, %v (%s)", got, gotFamily, tt.want, tt.wantFamily, tt.reason)
			}
		})
	}
}
