package refreshtoken

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The fields of a token endpoint's answer: decoding its body (JSON or
// form-encoded), and reading the string fields, expires_in and a JWT access
// token's exp. grant.parse turns them into a token.

// errNotJSON is decode's error for a body that is not a JSON object. parse
// reports it with the Content-Type, redacted.
var errNotJSON = errors.New("refreshtoken: token response is not a JSON object")

// decode reads a token response body, JSON or the form encoding some
// servers (GitHub's) use, as x/oauth2 does. It returns the fields, and the
// raw value behind Token.Extra: a map[string]any or url.Values, as in
// x/oauth2.
func decode(contentType string, body []byte) (fields map[string]any, raw any, err error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, nil, fmt.Errorf("refreshtoken: token response is not valid %s (%d bytes)", mt, len(body))
		}
		fields := make(map[string]any, len(vals))
		for k := range vals {
			fields[k] = vals.Get(k)
		}
		return fields, vals, nil
	}
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		// Not the decoder's error, which quotes the body: it may hold a
		// token.
		return nil, nil, errNotJSON
	}
	return fields, fields, nil
}

// field returns the string field key; "" if it is absent or null.
func field(fields map[string]any, key string) (string, error) {
	switch v := fields[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("refreshtoken: token response field %s is a %T, not a string", key, v)
	}
}

// expiresIn reads expires_in, a number or a numeric string of seconds, as
// the token's lifetime; ok is false if it is absent. A fraction of a second
// counts. A lifetime past maxLifetime is cut to it (x/oauth2 cuts at
// MaxInt32 seconds). A value <= 0 is an error: the token has already
// expired, as x/oauth2 reads a negative value (it reads 0 as absent).
func expiresIn(v any) (life time.Duration, ok bool, err error) {
	var f float64
	switch v := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		f = v
	case string:
		// Not the value in the error: the server chose it.
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false, fmt.Errorf("refreshtoken: token response expires_in is not a number (a %d-byte string)", len(v))
		}
	default:
		return 0, false, fmt.Errorf("refreshtoken: token response expires_in is a %T, not a number", v)
	}
	switch {
	case f <= 0:
		// %.6g: the number, and not all of a long digit string.
		return 0, false, fmt.Errorf("refreshtoken: token response expires_in is %.6g: the access token has already expired", f)
	case f >= maxLifetime.Seconds():
		return maxLifetime, true, nil
	}
	return time.Duration(max(math.Round(f*float64(time.Second)), 1)), true, nil
}

// jwtLifetime returns the lifetime, from sent, given by the exp claim of an
// access token that is a JWT; ok is false if it is not one or has no exp.
// An exp not after sent is an error: the token has already expired. An exp
// past maxLifetime is cut to it, without guessing at units (a server may
// send milliseconds): the token is then used until an API rejects it, which
// [Transport] handles, or a year passes. The signature is not checked: the
// claim only schedules the next refresh.
func jwtLifetime(access string, sent time.Time) (life time.Duration, ok bool, err error) {
	parts := strings.Split(access, ".")
	if len(parts) != 3 {
		return 0, false, nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return 0, false, nil
	}
	var claims struct {
		Exp *float64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return 0, false, nil
	}
	exp := *claims.Exp
	if exp > float64(sent.Add(maxLifetime).Unix()) {
		return maxLifetime, true, nil
	}
	if exp > float64(sent.Unix()-1) {
		sec, frac := math.Modf(exp)
		if life = time.Unix(int64(sec), int64(frac*1e9)).Sub(sent); life > 0 {
			return life, true, nil
		}
	}
	return 0, false, fmt.Errorf("refreshtoken: token response's access token is a JWT whose exp (%.6g) is not after the request was sent: it has already expired", exp)
}
