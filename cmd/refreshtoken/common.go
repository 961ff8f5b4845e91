package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// common is what login and token are both told: the server, the client,
// and the state. Both commands register these flags and check them here,
// so that a profile made by one is the profile the other reads.
type common struct {
	tokenURL, clientID, audience, scopes string
	secretFile, state, profile, keyFile  string
	basicAuth                            bool
	timeout                              time.Duration // registered by each command: its meaning differs
}

// register adds the common flags to fs, with defaults from the
// environment; scopes says what -scopes does for this command.
func (c *common) register(fs *flag.FlagSet, getenv func(string) string, scopes string) {
	fs.StringVar(&c.tokenURL, "token-url", getenv("REFRESHTOKEN_TOKEN_URL"), "token endpoint, such as https://YOUR_DOMAIN/oauth/token (env REFRESHTOKEN_TOKEN_URL); plain http only to localhost")
	fs.StringVar(&c.clientID, "client-id", getenv("REFRESHTOKEN_CLIENT_ID"), "client ID (env REFRESHTOKEN_CLIENT_ID)")
	fs.StringVar(&c.secretFile, "client-secret-file", "", "file holding the client secret; default env REFRESHTOKEN_CLIENT_SECRET; none for a public client")
	fs.StringVar(&c.audience, "audience", getenv("REFRESHTOKEN_AUDIENCE"), "Auth0 audience (env REFRESHTOKEN_AUDIENCE)")
	fs.StringVar(&c.scopes, "scopes", getenv("REFRESHTOKEN_SCOPES"), "space-separated scopes, "+scopes+" (env REFRESHTOKEN_SCOPES)")
	fs.StringVar(&c.profile, "profile", "default", "name of the state under the user's configuration directory: one per server")
	fs.StringVar(&c.state, "state", "", "state file (default <config dir>/refreshtoken/<profile>.json)")
	fs.BoolVar(&c.basicAuth, "basic-auth", false, "send the client secret with HTTP Basic instead of in the body")
	fs.StringVar(&c.keyFile, "key-file", "", "encrypt the state with the key in this file (made by refreshtoken keygen); default env REFRESHTOKEN_STATE_KEY; none: the state is not encrypted")
}

// parse parses args with fs, on which register was called, and checks
// the common settings. It returns flag.ErrHelp for -h.
func (c *common) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{} // the flag package has said why
	}
	switch {
	case fs.NArg() > 0:
		// Not shown: it may be a pasted refresh token.
		return &usageError{"unexpected argument (not shown: it may be a secret); a refresh token is never given as an argument, which other users can see in ps: use refreshtoken token -refresh-token-file FILE, or -refresh-token-file - with the token on standard input"}
	case c.tokenURL == "":
		return &usageError{"no token URL: set -token-url or REFRESHTOKEN_TOKEN_URL"}
	case c.clientID == "":
		return &usageError{"no client ID: set -client-id or REFRESHTOKEN_CLIENT_ID"}
	case c.timeout <= 0:
		return &usageError{"-timeout must be positive"}
	case !validProfile(c.profile):
		return &usageError{"-profile must be a name of letters, digits, '.', '-' and '_', not starting with '.'"}
	}
	return checkURL(tokenURL, c.tokenURL)
}

// secret returns the client secret: from -client-secret-file, or the
// environment; "" for a public client.
func (c *common) secret(getenv func(string) string) (string, error) {
	if c.secretFile == "" {
		return getenv("REFRESHTOKEN_CLIENT_SECRET"), nil
	}
	b, err := os.ReadFile(c.secretFile)
	if err != nil {
		return "", fmt.Errorf("reading the client secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// binding is the server the settings name.
func (c *common) binding() binding {
	return binding{TokenURL: c.tokenURL, ClientID: c.clientID, Audience: c.audience}
}

// oauthConfig returns the client's configuration for the token endpoint.
func (c *common) oauthConfig(secret string, scopes []string) *oauth2.Config {
	conf := &oauth2.Config{ClientID: c.clientID, ClientSecret: secret, Scopes: scopes,
		Endpoint: oauth2.Endpoint{TokenURL: c.tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	if c.basicAuth {
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return conf
}

// endpoint names a URL setting in messages.
type endpoint struct {
	name    string // "the token URL (-token-url or REFRESHTOKEN_TOKEN_URL)"
	example string
}

var (
	tokenURL      = endpoint{"the token URL (-token-url or REFRESHTOKEN_TOKEN_URL)", "https://YOUR_DOMAIN/oauth/token"}
	authURL       = endpoint{"the authorization URL (-auth-url)", "https://YOUR_DOMAIN/authorize"}
	deviceAuthURL = endpoint{"the device authorization URL (-device-auth-url)", "https://YOUR_DOMAIN/oauth/device/code"}
)

// checkURL refuses an endpoint that is not an absolute https URL, or http
// to a loopback host: the requests carry the refresh token, the code and
// the client secret. The URL is not shown: a mistaken paste may hold a
// secret.
func checkURL(e endpoint, s string) error {
	want := " is not an absolute URL such as " + e.example
	u, err := url.Parse(s)
	switch {
	case err != nil || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return &usageError{e.name + want + " (it holds a space or a control character, or does not parse)"}
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "", u.Opaque != "":
		return &usageError{e.name + want}
	case u.User != nil:
		return &usageError{e.name + " holds a user name or password: remove it; the client secret goes in -client-secret-file or REFRESHTOKEN_CLIENT_SECRET"}
	case u.Fragment != "" || strings.Contains(s, "#"):
		return &usageError{e.name + " has a #fragment: remove it"}
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return &usageError{e.name + " must use https: the requests carry the refresh token and the client secret (plain http is accepted only to localhost, for testing)"}
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
