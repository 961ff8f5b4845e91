package refreshtoken

import (
	"net/http"
	"testing"
)

// TestNonceChallenge: a 401's WWW-Authenticate asks for a DPoP nonce in
// any of the forms RFC 9110 allows: among other challenges, with the
// scheme in any case, the error as a token or quoted; and only then.
func TestNonceChallenge(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		header string
		want   bool
	}{
		{"quoted", 401, `DPoP error="use_dpop_nonce"`, true},
		{"token", 401, `DPoP error=use_dpop_nonce`, true},
		{"after another challenge", 401, `Bearer realm="api", DPoP error="use_dpop_nonce", algs="ES256"`, true},
		{"scheme in lower case", 401, `dpop  error="use_dpop_nonce"`, true},
		{"Bearer's error", 401, `Bearer error="use_dpop_nonce"`, false},
		{"dpop in a quoted value", 401, `Bearer realm="dpop error=use_dpop_nonce"`, false},
		{"another error", 401, `DPoP error="invalid_token"`, false},
		{"another scheme ending in DPoP", 401, `XDPoP error="use_dpop_nonce"`, false},
		{"another scheme starting with DPoP", 401, `DPoPx error="use_dpop_nonce"`, false},
		{"not a 401", 403, `DPoP error="use_dpop_nonce"`, false},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Www-Authenticate": {tt.header}}}
		if got := nonceChallenge(resp); got != tt.want {
			t.Errorf("%s: nonceChallenge(%d, %q) = %v, want %v", tt.name, tt.status, tt.header, got, tt.want)
		}
	}
}
