package main

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// keygen makes a new key file in e's directory, named name, and returns
// its path.
func (e *env) keygen(name string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	out := e.mustRun("", "keygen", "-key-file", path)
	if !strings.Contains(out, "Wrote a new state key to "+path) {
		e.t.Errorf("keygen printed %q", out)
	}
	return path
}

// noSecretIn fails the test if the file at path holds a secret of the
// server's.
func (e *env) noSecretIn(path string) {
	e.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range e.srv.Secrets() {
		if strings.Contains(string(b), s) {
			e.t.Errorf("%s holds a token (%.6s...)", path, s)
		}
	}
}

// TestKeygen: keygen writes 32 random bytes as base64, mode 0600, and
// never replaces a file.
func TestKeygen(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	path := e.keygen("state.key")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi, err)
	}
	b, _ := os.ReadFile(path)
	if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err != nil || len(raw) != 32 {
		t.Errorf("key file holds %d bytes of base64 (%v); want 32", len(raw), err)
	}
	if _, errOut, code := e.run("", "keygen", "-key-file", path); code != 2 || !strings.Contains(errOut, "exists") {
		t.Errorf("keygen over an existing file: exit %d, stderr %q; want 2, exists", code, errOut)
	}
	if after, _ := os.ReadFile(path); string(after) != string(b) {
		t.Error("keygen over an existing file changed it")
	}
	if _, _, code := e.run("", "keygen"); code != 2 {
		t.Errorf("keygen without -key-file: exit %d, want 2", code)
	}
}

// TestEncryptedState: with a key (file or environment), the state holds
// no token, and token works as without: the stored access token is
// reused with no request, and a refresh is saved.
func TestEncryptedState(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	key := e.keygen("state.key")
	first := e.mustRun(e.srv.NewRefreshToken(""), "token", "-key-file", key, "-refresh-token-file", "-")
	e.noSecretIn(e.state)
	if got := e.mustRun("", "token", "-key-file", key); got != first {
		t.Errorf("second token printed another access token; want the stored one")
	}
	b, _ := os.ReadFile(key)
	e.vars["REFRESHTOKEN_STATE_KEY"] = strings.TrimSpace(string(b))
	if got := e.mustRun("", "token", "-refresh"); got == first {
		t.Error("token -refresh with the key in the environment printed the old access token")
	}
	e.noSecretIn(e.state)
	if got := e.srv.Stats(); got.Refreshes != 2 || got.ReuseEvents != 0 {
		t.Errorf("server stats %+v; want 2 refreshes, no reuse", got)
	}
}

// TestEncryptedStateRefused: an encrypted state read without its key, with
// another key, or for another server sends nothing and says what to do.
func TestEncryptedStateRefused(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	key := e.keygen("state.key")
	other := e.keygen("other.key")
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-key-file", key, "-refresh-token-file", "-")
	keyBytes, _ := os.ReadFile(key)

	// A copy of the state for another client, meta file and all, edited
	// to name that client: as if an attacker had moved it.
	copied := filepath.Join(e.dir, "copied.json")
	for _, suffix := range []string{"", ".meta"} {
		b, err := os.ReadFile(e.state + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if suffix == ".meta" {
			b = []byte(strings.Replace(string(b), `"test-client"`, `"other-client"`, 1))
		}
		if err := os.WriteFile(copied+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no key", []string{"token", "-refresh"}, "is encrypted: give its key"},
		{"another key", []string{"token", "-refresh", "-key-file", other}, "is encrypted with another key"},
		{"another server", []string{"token", "-key-file", key, "-client-id", "other-client"}, "belongs to another server"},
		{"a copy with its meta file edited", []string{"token", "-key-file", key, "-client-id", "other-client", "-state", copied}, "cannot be decrypted for this server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.requests()
			out, errOut, code := e.run("", tc.args...)
			if code != 2 || out != "" || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "nothing was sent") {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tc.want)
			}
			oneMessage(t, errOut)
			noSecret(t, errOut, append(e.srv.Secrets(), strings.TrimSpace(string(keyBytes)))...)
			if got := e.requests(); got != before {
				t.Errorf("token requests = %d, want %d: nothing sent", got, before)
			}
		})
	}
}

// TestEncryptPlainState: a plain state read with a key is refused, with
// how to encrypt it; encrypt does, and then token reads it with the key.
func TestEncryptPlainState(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	first := e.mustRun(e.srv.NewRefreshToken(""), "token", "-refresh-token-file", "-")
	key := e.keygen("state.key")
	_, errOut, code := e.run("", "token", "-key-file", key)
	if code != 2 || !strings.Contains(errOut, "is not encrypted") || !strings.Contains(errOut, "refreshtoken encrypt") {
		t.Errorf("token with a key on a plain state: exit %d, stderr %q; want 2 and how to encrypt it", code, errOut)
	}
	encrypt := func(args ...string) string {
		t.Helper()
		return e.mustRun("", append([]string{"encrypt", "-state", e.state}, args...)...)
	}
	if out := encrypt("-key-file", key); !strings.Contains(out, "Encrypted the session in "+e.state) {
		t.Errorf("encrypt printed %q", out)
	}
	e.noSecretIn(e.state)
	if out := encrypt("-key-file", key); !strings.Contains(out, "encrypted with this key already") {
		t.Errorf("a second encrypt printed %q", out)
	}
	if got := e.mustRun("", "token", "-key-file", key); got != first {
		t.Error("token after encrypt printed another access token; want the stored one")
	}
	if got := e.requests(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

// TestEncryptNewKey: encrypt -old-key-file moves the state to a new key;
// the old key then no longer reads it.
func TestEncryptNewKey(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	oldKey, newKey := e.keygen("old.key"), e.keygen("new.key")
	first := e.mustRun(e.srv.NewRefreshToken(""), "token", "-key-file", oldKey, "-refresh-token-file", "-")
	if out := e.mustRun("", "encrypt", "-state", e.state, "-key-file", newKey, "-old-key-file", oldKey); !strings.Contains(out, "Encrypted") {
		t.Errorf("encrypt to a new key printed %q", out)
	}
	if got := e.mustRun("", "token", "-key-file", newKey); got != first {
		t.Error("token with the new key printed another access token; want the stored one")
	}
	if _, errOut, code := e.run("", "token", "-key-file", oldKey); code != 2 || !strings.Contains(errOut, "another key") {
		t.Errorf("token with the old key: exit %d, stderr %q; want 2, another key", code, errOut)
	}
}

// TestBadKey: a key file open to others, or that is not a key, is refused
// before anything is read or sent, and its content is not shown.
func TestBadKey(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	open := e.keygen("open.key")
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(e.dir, "not.key")
	const pasted = "v1.MPastedRefreshTokenNotAKey"
	if err := os.WriteFile(notKey, []byte(pasted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	cases := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"open to others", []string{"-key-file", open}, "", "chmod 600 " + open},
		{"not base64", []string{"-key-file", notKey}, "", "is not base64 of 32 bytes"},
		{"16 bytes in the environment", nil, short, "REFRESHTOKEN_STATE_KEY is not base64 of 32 bytes"},
	}
	if os.Geteuid() == 0 {
		// Only root can give a file to another user: a key that another
		// user owns, and so could replace, is refused.
		theirs := e.keygen("theirs.key")
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name string
			args []string
			env  string
			want string
		}{"another user's", []string{"-key-file", theirs}, "", "belongs to another user"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.vars["REFRESHTOKEN_STATE_KEY"] = tc.env
			_, errOut, code := e.run(e.srv.NewRefreshToken(""), append([]string{"token", "-refresh-token-file", "-"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
			noSecret(t, errOut, pasted, short)
		})
	}
	if got := e.requests(); got != 0 {
		t.Errorf("token requests = %d, want 0", got)
	}
}

// TestEncryptedLogoutAndLogin: logout revokes an encrypted session; login
// with a key stores an encrypted one that token reads.
func TestEncryptedLogoutAndLogin(t *testing.T) {
	e := newEnv(t, refreshtokentest.Config{})
	key := e.keygen("state.key")
	e.mustRun(e.srv.NewRefreshToken(""), "token", "-key-file", key, "-refresh-token-file", "-")
	if out, errOut, code := e.logout("-key-file", key); code != 0 || !strings.Contains(out, "The server revoked the refresh token") {
		t.Fatalf("logout: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	e.gone()

	c := newCLI(t, refreshtokentest.Config{})
	cliKey := filepath.Join(c.dir, "state.key")
	if err := os.WriteFile(cliKey, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := c.startLogin("-key-file", cliKey)
	if status, _ := browse(t, authorizeURL(t, p).String()); status != http.StatusOK {
		t.Fatalf("the browser got %d", status)
	}
	if code := p.wait(); code != 0 {
		t.Fatalf("login -key-file exited %d; output:\n%s", code, p.out())
	}
	b, _ := os.ReadFile(c.state)
	for _, s := range c.srv.Secrets() {
		if strings.Contains(string(b), s) {
			t.Errorf("the state after login -key-file holds a token")
		}
	}
	if got := c.mustRun("", "token", "-key-file", cliKey); got == "" {
		t.Error("token after login -key-file printed nothing")
	}
	if got := c.srv.Stats(); got.Refreshes != 0 {
		t.Errorf("token after login refreshed %d times; want the login's access token", got.Refreshes)
	}
}

// writeKey writes a key of 32 bytes of fill to a new file in c's
// directory, and returns its path.
func (c *cli) writeKey(name string, fill byte) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name)
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(rune(fill)), 32)))
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// TestLoginReplacesUnreadableState: a lost key is a lost session, and
// signing in again is the way out (docs/command.md): login with a new
// key replaces a state sealed under another key with -replace (without,
// it refuses and says so, keeping the state for its key); and a state
// that cannot be opened for its server (changed) is replaced by login
// as a dead session is, as the token command's message says to.
func TestLoginReplacesUnreadableState(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	lost, fresh := c.writeKey("lost.key", 'a'), c.writeKey("new.key", 'b')
	c.mustRun(c.srv.NewRefreshToken(""), "token", "-key-file", lost, "-refresh-token-file", "-")
	before, _ := os.ReadFile(c.state)

	p := c.startLogin("-key-file", fresh)
	if code := p.wait(); code != 2 || !strings.Contains(p.out(), "another key") || !strings.Contains(p.out(), "-replace") || strings.Contains(p.out(), "/authorize?") {
		t.Errorf("login with another key exited %d, want 2, no sign-in, and how to replace; output:\n%s", code, p.out())
	}
	if after, _ := os.ReadFile(c.state); string(after) != string(before) {
		t.Error("login without -replace changed the state sealed under another key")
	}
	p = c.startLogin("-key-file", fresh, "-replace")
	browse(t, authorizeURL(t, p).String())
	if code := p.wait(); code != 0 {
		t.Fatalf("login -replace with a new key exited %d; output:\n%s", code, p.out())
	}
	if got := c.mustRun("", "token", "-key-file", fresh); got == "" {
		t.Error("token with the new key after login -replace printed nothing")
	}

	// The sealed entry changed: token says to sign in again, and login does.
	tok := storedToken(t, c.state)
	b, _ := os.ReadFile(c.state)
	// A character in the middle: all its bits are in the ciphertext.
	mid := len(tok.AccessToken) / 2
	flip := "A"
	if tok.AccessToken[mid] == 'A' {
		flip = "B"
	}
	changed := tok.AccessToken[:mid] + flip + tok.AccessToken[mid+1:]
	if err := os.WriteFile(c.state, []byte(strings.Replace(string(b), tok.AccessToken, changed, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := c.run("", "token", "-key-file", fresh); code != 2 || !strings.Contains(errOut, "cannot be decrypted") || !strings.Contains(errOut, "refreshtoken login") {
		t.Fatalf("token of a changed state: exit %d, stderr %q; want 2, cannot be decrypted, sign in again", code, errOut)
	}
	p = c.startLogin("-key-file", fresh)
	browse(t, authorizeURL(t, p).String())
	if code := p.wait(); code != 0 {
		t.Fatalf("login over a changed state exited %d; output:\n%s", code, p.out())
	}
	if got := c.mustRun("", "token", "-key-file", fresh); got == "" {
		t.Error("token after login over a changed state printed nothing")
	}
	if got := c.srv.Stats(); got.Refreshes != 1 || got.ReuseEvents != 0 {
		t.Errorf("server stats %+v; want only the first session's refresh: nothing unreadable is sent", got)
	}
}
