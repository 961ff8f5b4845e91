package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// config is what the token command was told.
type config struct {
	tokenURL, clientID, audience, scopes string
	refreshTokenFile, secretFile         string
	state, profile                       string
	idToken, asJSON, showRefresh, force  bool
	jsonBody, basicAuth                  bool
	timeout                              time.Duration
}

// parse reads the token command's flags and checks them.
func (c *config) parse(args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("refreshtoken token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.tokenURL, "token-url", getenv("REFRESHTOKEN_TOKEN_URL"), "token endpoint, such as https://YOUR_DOMAIN/oauth/token (env REFRESHTOKEN_TOKEN_URL); plain http only to localhost")
	fs.StringVar(&c.clientID, "client-id", getenv("REFRESHTOKEN_CLIENT_ID"), "client ID (env REFRESHTOKEN_CLIENT_ID)")
	fs.StringVar(&c.secretFile, "client-secret-file", "", "file holding the client secret; default env REFRESHTOKEN_CLIENT_SECRET; none for a public client")
	fs.StringVar(&c.audience, "audience", getenv("REFRESHTOKEN_AUDIENCE"), "Auth0 audience (env REFRESHTOKEN_AUDIENCE)")
	fs.StringVar(&c.scopes, "scopes", getenv("REFRESHTOKEN_SCOPES"), "space-separated scopes, to narrow the granted ones (env REFRESHTOKEN_SCOPES)")
	fs.StringVar(&c.refreshTokenFile, "refresh-token-file", "", "file holding a refresh token (one line, or a JSON token response), or - for standard input (a pipe, not a terminal): replaces the stored one")
	fs.StringVar(&c.profile, "profile", "default", "name of the state under the user's configuration directory: one per server")
	fs.StringVar(&c.state, "state", "", "state file (default <config dir>/refreshtoken/<profile>.json)")
	fs.BoolVar(&c.idToken, "id-token", false, "print the ID token instead of the access token")
	fs.BoolVar(&c.asJSON, "json", false, "print the whole token as JSON (refresh token redacted)")
	fs.BoolVar(&c.showRefresh, "show-refresh-token", false, "with -json, include the refresh token")
	fs.BoolVar(&c.force, "refresh", false, "get a new access token even if the stored one is valid")
	fs.BoolVar(&c.jsonBody, "json-body", false, "send the refresh request as JSON instead of a form")
	fs.BoolVar(&c.basicAuth, "basic-auth", false, "send the client secret with HTTP Basic instead of in the body")
	fs.DurationVar(&c.timeout, "timeout", refreshtoken.DefaultRefreshTimeout, "how long to try, retries included")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{} // the flag package has said why
	}
	switch {
	case fs.NArg() > 0:
		// Not shown: it may be a pasted refresh token.
		return &usageError{"unexpected argument (not shown: it may be a secret); a refresh token is never given as an argument, which other users can see in ps: use -refresh-token-file FILE, or -refresh-token-file - with the token on standard input"}
	case c.tokenURL == "":
		return &usageError{"no token URL: set -token-url or REFRESHTOKEN_TOKEN_URL"}
	case c.clientID == "":
		return &usageError{"no client ID: set -client-id or REFRESHTOKEN_CLIENT_ID"}
	case c.idToken && c.asJSON:
		return &usageError{"-id-token and -json exclude each other"}
	case c.showRefresh && !c.asJSON:
		return &usageError{"-show-refresh-token goes with -json"}
	case c.timeout <= 0:
		return &usageError{"-timeout must be positive"}
	case !validProfile(c.profile):
		return &usageError{"-profile must be a name of letters, digits, '.', '-' and '_', not starting with '.'"}
	}
	return checkTokenURL(c.tokenURL)
}

// checkTokenURL refuses a token URL that is not an absolute https URL, or
// http to a loopback host. The URL is not shown: a mistaken paste may hold
// a secret.
func checkTokenURL(s string) error {
	const want = "an absolute URL such as https://YOUR_DOMAIN/oauth/token"
	u, err := url.Parse(s)
	switch {
	case err != nil || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return &usageError{"the token URL (-token-url or REFRESHTOKEN_TOKEN_URL) is not " + want + " (it holds a space or a control character, or does not parse)"}
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return &usageError{"the token URL (-token-url or REFRESHTOKEN_TOKEN_URL) is not " + want}
	case u.User != nil:
		return &usageError{"the token URL holds a user name or password: remove it; the client secret goes in -client-secret-file or REFRESHTOKEN_CLIENT_SECRET"}
	case u.Fragment != "" || strings.Contains(s, "#"):
		return &usageError{"the token URL has a #fragment: remove it"}
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return &usageError{"the token URL must use https: the request carries the refresh token and the client secret (plain http is accepted only to localhost, for testing)"}
	}
	return nil
}

// loopback reports whether host is this machine: localhost or a loopback
// address. Plain http is accepted only there.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// validProfile reports whether a profile name makes a file name in the
// state directory, and nothing else (no path, no hidden file).
func validProfile(p string) bool {
	if p == "" || p[0] == '.' || len(p) > 64 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func token(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var c config
	if err := c.parse(args, stderr, getenv); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return report(stderr, err)
	}
	tok, err := c.token(stdin, getenv)
	if err != nil {
		return report(stderr, err)
	}
	switch {
	case c.idToken:
		id, _ := tok.Extra("id_token").(string)
		if id == "" {
			return report(stderr, errors.New("the token has no ID token: sign in with a scope that includes openid"))
		}
		fmt.Fprintln(stdout, id)
	case c.asJSON:
		if err := printJSON(stdout, tok, c.showRefresh); err != nil {
			return report(stderr, err)
		}
	default:
		fmt.Fprintln(stdout, tok.AccessToken)
	}
	return 0
}

// token returns a valid token: the stored one, or a refreshed one.
func (c *config) token(stdin io.Reader, getenv func(string) string) (*oauth2.Token, error) {
	secret := getenv("REFRESHTOKEN_CLIENT_SECRET")
	if c.secretFile != "" {
		b, err := os.ReadFile(c.secretFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	var given string
	if c.refreshTokenFile != "" {
		var err error
		if given, err = readRefreshToken(c.refreshTokenFile, stdin); err != nil {
			return nil, err
		}
	}
	path, err := statePath(c.state, c.profile)
	if err != nil {
		return nil, err
	}
	st, err := openState(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	b := binding{TokenURL: c.tokenURL, ClientID: c.clientID, Audience: c.audience}
	if given != "" {
		err = st.NewSession(b, &oauth2.Token{RefreshToken: given})
	} else {
		_, err = st.Token(b)
	}
	if err != nil {
		return nil, err
	}

	conf := &oauth2.Config{ClientID: c.clientID, ClientSecret: secret, Scopes: strings.Fields(c.scopes),
		Endpoint: oauth2.Endpoint{TokenURL: c.tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	if c.basicAuth {
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	var opts []refreshtoken.Option
	if c.audience != "" {
		opts = append(opts, refreshtoken.WithEndpointParams(url.Values{"audience": {c.audience}}))
	}
	if c.jsonBody {
		opts = append(opts, refreshtoken.WithJSONBody())
	}
	f := &fetch{conf: conf, opts: opts, st: st, force: c.force, timeout: c.timeout}
	return f.token()
}

// printJSON prints the token as stored (with its real expiry), the refresh
// token redacted unless asked for.
func printJSON(stdout io.Writer, tok *oauth2.Token, showRefresh bool) error {
	out := map[string]any{"access_token": tok.AccessToken, "token_type": tok.Type(), "expiry": tok.Expiry}
	if tok.RefreshToken != "" {
		out["refresh_token"] = "[redacted: add -show-refresh-token]"
		if showRefresh {
			out["refresh_token"] = tok.RefreshToken
		}
	}
	for _, k := range []string{"id_token", "scope"} {
		if v, ok := tok.Extra(k).(string); ok && v != "" {
			out[k] = v
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := stdout.Write(b.Bytes())
	return err
}
