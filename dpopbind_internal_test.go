package refreshtoken

import (
	"net/http"
	"testing"
	"time"
)

// TestBindingField: the key a new refresh token is bound to is the
// source's, whatever field of that name the server sends: a server cannot
// bind the token to a key the source does not hold, nor unbind it.
func TestBindingField(t *testing.T) {
	sent := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name, contentType, body string
		thumb                   string // the source's key; "": no DPoP
	}{
		{name: "no DPoP, none sent", contentType: "application/json", body: `{"access_token":"at","refresh_token":"rt2"}`},
		{name: "no DPoP, forged", contentType: "application/json", body: `{"access_token":"at","refresh_token":"rt2","dpop_jkt":"evil"}`},
		{name: "no DPoP, forged, form", contentType: "application/x-www-form-urlencoded", body: "access_token=at&refresh_token=rt2&dpop_jkt=evil"},
		{name: "DPoP, none sent", contentType: "application/json", body: `{"access_token":"at","refresh_token":"rt2"}`, thumb: "mine"},
		{name: "DPoP, forged", contentType: "application/json", body: `{"access_token":"at","refresh_token":"rt2","dpop_jkt":"evil"}`, thumb: "mine"},
		{name: "DPoP, forged empty", contentType: "application/json", body: `{"access_token":"at","refresh_token":"rt2","dpop_jkt":""}`, thumb: "mine"},
		{name: "DPoP, forged, form", contentType: "application/x-www-form-urlencoded", body: "access_token=at&refresh_token=rt2&dpop_jkt=evil", thumb: "mine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &grant{}
			if tt.thumb != "" {
				g.dpop = &dpop{thumb: tt.thumb}
			}
			resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {tt.contentType}}}
			tok, _, err := g.parse(resp, []byte(tt.body), sent, "rt1", time.Time{})
			if err != nil {
				t.Fatalf("parse() error = %v", err)
			}
			if got, _ := tok.Extra(ExtraDPoPThumbprint).(string); got != tt.thumb {
				t.Errorf("Extra(%q) = %q, want %q", ExtraDPoPThumbprint, got, tt.thumb)
			}
		})
	}
}
