package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestRefreshTokenInput: the refresh token is one line, or a JSON token
// response; anything else is refused without being echoed or sent, the
// same from standard input and from a file.
func TestRefreshTokenInput(t *testing.T) {
	tests := []struct {
		name    string
		input   func(rt string) string
		wantErr string // "" for success
	}{
		{name: "one line", input: func(rt string) string { return rt }},
		{name: "spaces and newlines around", input: func(rt string) string { return "  \n" + rt + " \r\n\n" }},
		{name: "byte order mark", input: func(rt string) string { return "\uFEFF" + rt + "\n" }},
		{name: "token response", input: func(rt string) string {
			return `{"access_token":"at-pasted","token_type":"Bearer","expires_in":86400,"refresh_token":"` + rt + `"}`
		}},
		{name: "empty", input: func(string) string { return " \n" }, wantErr: "is empty"},
		{name: "several lines", input: func(rt string) string { return rt + "\n" + rt + "-2\n" }, wantErr: "has several lines"},
		{name: "JSON without refresh_token", input: func(string) string { return `{"access_token":"at-pasted-secret"}` }, wantErr: "without a refresh_token"},
		{name: "JSON refresh_token not a string", input: func(string) string { return `{"refresh_token":12345678}` }, wantErr: "not a token response"},
		{name: "JSON array", input: func(rt string) string { return `{["` + rt + `"]}` }, wantErr: "not a token response"},
		{name: "control character", input: func(rt string) string { return rt + "\x1b[2J" }, wantErr: "control character"},
		{name: "NUL", input: func(rt string) string { return rt + "\x00" }, wantErr: "control character"},
		{name: "space inside", input: func(rt string) string { return rt + " " + rt }, wantErr: "holds a space"},
		{name: "non-ASCII", input: func(rt string) string { return rt + "é" }, wantErr: "non-ASCII"},
		{name: "invalid UTF-8", input: func(rt string) string { return rt + "\xff" }, wantErr: "non-ASCII"},
		{name: "huge", input: func(rt string) string { return rt + strings.Repeat("x", maxInput) }, wantErr: "larger than 64 KiB"},
	}
	for _, tt := range tests {
		for _, from := range []string{"stdin", "file"} {
			t.Run(tt.name+"/"+from, func(t *testing.T) {
				e := newEnv(t, refreshtokentest.Config{})
				rt := e.srv.NewRefreshToken("")
				input := tt.input(rt)
				var out, errOut string
				var code int
				if from == "stdin" {
					out, errOut, code = e.run(input, "token", "-refresh-token-file", "-")
				} else {
					file := filepath.Join(e.dir, "rt")
					if err := os.WriteFile(file, []byte(input), 0o600); err != nil {
						t.Fatal(err)
					}
					out, errOut, code = e.run("", "token", "-refresh-token-file", file)
				}
				if tt.wantErr == "" {
					if code != 0 || !strings.HasPrefix(out, "at-") || strings.Contains(out, "at-pasted") {
						t.Errorf("exit %d, stdout %q, stderr %q; want 0 and a refreshed access token", code, out, errOut)
					}
					if got := e.stored(); got != newest(e.srv, rt) {
						t.Errorf("stored a refresh token that is not the newest of the family")
					}
					return
				}
				if code != 2 || !strings.Contains(errOut, tt.wantErr) || !strings.Contains(errOut, "(not shown)") {
					t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.wantErr)
				}
				oneMessage(t, errOut)
				noSecret(t, out+errOut, rt, "at-pasted-secret", "12345678")
				if got := e.requests(); got != 0 {
					t.Errorf("token requests = %d, want 0", got)
				}
				if _, err := os.Stat(e.state); err == nil {
					t.Errorf("a state file was written")
				}
			})
		}
	}
}

// TestRefreshTokenFromTerminalRefused: standard input that is a character
// device, such as a terminal, is not read: typing would show the token and
// nothing would prompt for it. /dev/null is a character device, as a
// terminal is, and is at hand in a test.
func TestRefreshTokenFromTerminalRefused(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	tty, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	if fi, err := tty.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Skipf("%s is not a character device here", os.DevNull)
	}
	_, errOut, code := e.runFrom(tty, "token", "-refresh-token-file", "-")
	if code != 2 || !strings.Contains(errOut, "standard input is a terminal") || !strings.Contains(errOut, "-refresh-token-file - < ") {
		t.Errorf("exit %d, stderr %q; want 2 and how to pipe the token", code, errOut)
	}
	if got := e.requests(); got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// newest returns the server's newest refresh token of rt's family.
func newest(srv *refreshtokentest.Server, rt string) string {
	n, _ := srv.Newest(rt)
	return n
}
