package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// revokeURL names the revocation endpoint in messages.
var revokeURL = endpoint{"the revocation URL (-revoke-url)", "https://YOUR_DOMAIN/oauth/revoke"}

// logoutConfig is what the logout command was told.
type logoutConfig struct {
	common
	revokeURL       string
	jsonBody, force bool
}

// logout signs the user out: it revokes the stored refresh token at the
// server (RFC 7009) and deletes the state. If the server does not revoke
// it, the state is kept, unless -force asks to delete it all the same.
func logout(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var c logoutConfig
	err := c.parse(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return report(stderr, "logout", err)
	}
	return c.run(stdout, stderr, getenv)
}

// parse reads the flags and checks them.
func (c *logoutConfig) parse(args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("refreshtoken logout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs, getenv, "unused by logout")
	fs.StringVar(&c.revokeURL, "revoke-url", "", "revocation endpoint (default: the token URL's .../oauth/token made .../oauth/revoke, as on Auth0)")
	fs.BoolVar(&c.jsonBody, "json-body", false, "send the revocation request as JSON instead of a form")
	fs.BoolVar(&c.force, "force", false, "delete the stored session even if the server does not revoke the refresh token (it then stays valid until it expires)")
	fs.DurationVar(&c.timeout, "timeout", refreshtoken.DefaultRefreshTimeout, "how long to wait for the server")
	if err := c.common.parse(fs, args); err != nil {
		return err
	}
	if c.revokeURL == "" {
		base, ok := strings.CutSuffix(c.tokenURL, "/oauth/token")
		if !ok {
			return &usageError{revokeURL.name + " is not set, and the token URL does not end in /oauth/token to derive it from: set -revoke-url"}
		}
		c.revokeURL = base + "/oauth/revoke"
	}
	return checkURL(revokeURL, c.revokeURL)
}

// run signs out and returns the exit status.
func (c *logoutConfig) run(stdout, stderr io.Writer, getenv func(string) string) int {
	secret, err := c.secret(getenv)
	if err != nil {
		return report(stderr, "logout", err)
	}
	path, err := statePath(c.state, c.profile)
	if err != nil {
		return report(stderr, "logout", err)
	}
	keys, err := c.stateKeys(getenv, "")
	if err != nil {
		return report(stderr, "logout", err)
	}
	st, err := openState(path, keys, c.binding())
	if err != nil {
		return report(stderr, "logout", err)
	}
	defer st.Close()

	_, err = st.Token(c.binding())
	switch {
	case errors.Is(err, errNoToken):
		if err := st.Remove(); err != nil {
			return report(stderr, "logout", err)
		}
		fmt.Fprintf(stdout, "Not signed in: no session stored in %s.\n", path)
		return 0
	case errors.Is(err, errRejected):
		// Dead at the server already: nothing to revoke.
		if err := c.forget(st); err != nil {
			return report(stderr, "logout", err)
		}
		fmt.Fprintf(stdout, "Signed out. The server had rejected the stored refresh token already; removed the session from %s.\n", path)
		return 0
	case errors.Is(err, errUnbound) && c.force:
		if err := c.forget(st); err != nil {
			return report(stderr, "logout", err)
		}
		fmt.Fprintf(stderr, "refreshtoken logout: the stored session did not say which server it belongs to, so its refresh token was not sent anywhere: it stays valid at its server until it expires. Removed the session from %s (-force).\n", path)
		return exitError
	case errors.Is(err, errUnbound):
		return report(stderr, "logout", &usageError{fmt.Sprintf("the session in %s does not say which server it belongs to, so its refresh token is not sent anywhere; nothing was sent. Add -force to remove it without revoking it.", path)})
	case err != nil:
		return report(stderr, "logout", err)
	}

	ts := c.source(st, secret)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := ts.Revoke(ctx); err != nil {
		why := revocationFailure(err)
		if !c.force {
			fmt.Fprintf(stderr, "refreshtoken logout: the refresh token was not revoked: %s.\nThe session is kept in %s. Try again, or add -force to remove it all the same (the refresh token then stays valid at the server until it expires).\n", why, path)
			return exitError
		}
		if err := c.forget(st); err != nil {
			return report(stderr, "logout", err)
		}
		fmt.Fprintf(stderr, "refreshtoken logout: the refresh token was not revoked: %s.\nRemoved the session from %s all the same (-force): the refresh token stays valid at the server until it expires.\n", why, path)
		return exitError
	}
	if err := st.Remove(); err != nil {
		return report(stderr, "logout", fmt.Errorf("the refresh token was revoked, but the session could not be removed from %s: %w", path, err))
	}
	fmt.Fprintf(stdout, "Signed out. The server revoked the refresh token; removed the session from %s.\n", path)
	return 0
}

// source returns a source on the state, which Revoke loads: the stored
// refresh token is sent, and the sign-out written over it (through a
// symbolic link too) before the files are removed.
func (c *logoutConfig) source(st *state, secret string) *refreshtoken.TokenSource {
	opts := []refreshtoken.Option{refreshtoken.WithStore(st.store), refreshtoken.WithRevocationURL(c.revokeURL), refreshtoken.WithRefreshTimeout(c.timeout)}
	if c.jsonBody {
		opts = append(opts, refreshtoken.WithJSONBody())
	}
	return refreshtoken.New(context.Background(), c.oauthConfig(secret, nil), &oauth2.Token{}, opts...)
}

// forget overwrites the stored token, without telling the server, and
// removes the state.
func (c *logoutConfig) forget(st *state) error {
	if err := c.source(st, "").Forget(context.Background()); err != nil {
		return stateError(err)
	}
	return st.Remove()
}

// revocationFailure says why the revocation failed.
func revocationFailure(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return "the server answered HTTP " + statusText(re.Response.StatusCode) + serverSaid(re)
	}
	return strings.Replace(describe(err), "token server", "server", 1)
}

// Remove deletes the state's files, the token first; the lock file stays,
// as other invocations may be waiting on it.
func (s *state) Remove() error {
	for _, p := range []string{s.path, s.metaPath()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
