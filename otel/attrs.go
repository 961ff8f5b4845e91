package refreshtokenotel

import (
	"context"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// The attributes of this package. Every value is one of a known set: the
// package's enums, or what errorType and knownStatus let through.
const (
	outcomeKey   = attribute.Key("refreshtoken.outcome")
	reasonKey    = attribute.Key("refreshtoken.reason")
	saveKey      = attribute.Key("refreshtoken.save.result")
	retryKey     = attribute.Key("refreshtoken.save.retry")
	foundKey     = attribute.Key("refreshtoken.store.found")
	opKey        = attribute.Key("refreshtoken.store.operation")
	keptKey      = attribute.Key("refreshtoken.lock.kept")
	resultKey    = attribute.Key("refreshtoken.unauthorized.result")
	droppedKey   = attribute.Key("refreshtoken.unauthorized.dropped")
	recoveredKey = attribute.Key("refreshtoken.recovered")
	revokeKey    = attribute.Key("refreshtoken.signout.revoke")
	signedOutKey = attribute.Key("refreshtoken.signout.dropped")

	// Span attributes only.
	idKey             = attribute.Key("refreshtoken.refresh.id")
	fingerprintKey    = attribute.Key("refreshtoken.fingerprint")
	newFingerprintKey = attribute.Key("refreshtoken.new_fingerprint")
	rotatedKey        = attribute.Key("refreshtoken.rotated")
	sentKey           = attribute.Key("refreshtoken.sent")
	lifetimeKey       = attribute.Key("refreshtoken.token.lifetime")
	timeLeftKey       = attribute.Key("refreshtoken.token.time_left")
	backoffKey        = attribute.Key("refreshtoken.backoff")
	waitersKey        = attribute.Key("refreshtoken.waiters")
	longestWaitKey    = attribute.Key("refreshtoken.longest_wait")
	waitKey           = attribute.Key("refreshtoken.wait.duration")
	oauthErrorKey     = attribute.Key("refreshtoken.oauth.error")
)

// other stands for any value outside a known set, as the semantic
// conventions' error.type and http.request.method do.
const other = "_OTHER"

// oauthError is code if it is known, other if not, "" for none. The
// known codes are those of RFC 6749 section 5.2 and those Auth0 and others
// send from a token endpoint. Any other code is other: the code is the
// server's text, and a hostile server could send a secret in it, or a new
// code at every request.
func oauthError(code string) string {
	switch code {
	case "", "invalid_request", "invalid_client", "invalid_grant",
		"unauthorized_client", "unsupported_grant_type", "invalid_scope",
		"access_denied", "server_error", "temporarily_unavailable",
		"too_many_requests", "invalid_token", "consent_required",
		"login_required", "interaction_required", "mfa_required",
		"expired_token", "slow_down":
		return code
	}
	return other
}

// knownStatus reports whether an HTTP status of the token endpoint is one
// a metric may carry: those a token endpoint sends in practice. Any status
// from 100 to 999 parses, and a metric series for each is not wanted; a
// span carries the status as it came.
func knownStatus(status int) bool {
	switch status {
	case 200, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 501, 502, 503, 504:
		return true
	}
	return false
}

// errorType is the error.type of err, from a known set: the OAuth error
// code of the endpoint's answer if known, else its HTTP status if known,
// else "timeout", "closed" or "not_saved" for those errors of the source,
// else other. It is "" for no error.
func errorType(err error) string {
	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re) && re.ErrorCode != "":
		return oauthError(re.ErrorCode)
	case re != nil && re.Response != nil && knownStatus(re.Response.StatusCode):
		return strconv.Itoa(re.Response.StatusCode)
	case re != nil:
		return other
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, refreshtoken.ErrClosed):
		return "closed"
	case errors.Is(err, refreshtoken.ErrNotSaved):
		return "not_saved"
	}
	return other
}

// statusAttr appends the status, if there is one and it is known.
func statusAttr(attrs []attribute.KeyValue, status int) []attribute.KeyValue {
	if knownStatus(status) {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
	}
	return attrs
}

// errorAttr appends error.type, if there is an error.
func errorAttr(attrs []attribute.KeyValue, typ string) []attribute.KeyValue {
	if typ != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(typ))
	}
	return attrs
}

// unauthorizedResult is how a 401 of Transport ended.
func unauthorizedResult(e refreshtoken.Unauthorized) string {
	switch {
	case e.RejectedAgain:
		return "rejected_again"
	case e.Retried:
		return "retried"
	}
	return "not_retried"
}
