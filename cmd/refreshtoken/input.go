package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxInput bounds what is read of a refresh token file: a refresh token,
// or a token response holding one, is a few kilobytes.
const maxInput = 64 << 10

// readRefreshToken reads the refresh token given with -refresh-token-file:
// the file name, or "-" for stdin, which must not be a terminal (typing
// would show the token on screen, and nothing would say that the command
// is waiting for it). Errors never quote the input.
func readRefreshToken(name string, stdin io.Reader) (string, error) {
	what := "the refresh token file " + name
	r := stdin
	if name == "-" {
		what = "the refresh token on standard input"
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return "", &usageError{"standard input is a terminal: the refresh token is not typed in, where it would show. Give it from a file or a pipe:\n" +
					"  refreshtoken token -refresh-token-file - < refresh-token.txt\n" +
					"  pass show auth0/refresh-token | refreshtoken token -refresh-token-file -"}
			}
		}
	} else {
		f, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("reading the refresh token: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	if len(b) > maxInput {
		return "", &usageError{fmt.Sprintf("%s is larger than %d KiB (not shown): that is not a refresh token", what, maxInput>>10)}
	}
	rt, problem := parseRefreshToken(b)
	if problem != "" {
		return "", &usageError{fmt.Sprintf("%s %s (not shown). Give one line holding the refresh token, or the JSON token response", what, problem)}
	}
	return rt, nil
}

// parseRefreshToken reads a refresh token from one line (spaces around it
// trimmed) or from a JSON token response (its refresh_token field; the
// rest, such as the access token, is ignored: its age is unknown). A
// refresh token is printable ASCII (RFC 6749's VSCHAR) without spaces.
// problem says what is wrong, without quoting b.
func parseRefreshToken(b []byte) (rt, problem string) {
	b = bytes.TrimPrefix(b, []byte("\uFEFF")) // a byte order mark some editors write
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "", "is empty"
	case strings.HasPrefix(s, "{"):
		var resp struct {
			RefreshToken *string `json:"refresh_token"`
		}
		if err := json.Unmarshal([]byte(s), &resp); err != nil {
			return "", "looks like JSON but is not a token response object"
		}
		if resp.RefreshToken == nil || *resp.RefreshToken == "" {
			return "", "is a JSON object without a refresh_token (sign in with the offline_access scope to get one)"
		}
		s = *resp.RefreshToken
	case strings.ContainsAny(s, "\r\n"):
		return "", "has several lines"
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return "", "holds a space, a control character or a non-ASCII character, which a refresh token cannot"
		}
	}
	return s, ""
}
