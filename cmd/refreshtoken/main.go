// Command refreshtoken prints a valid OAuth 2.0 access token, from a
// refresh token, for shell scripts:
//
//	curl -H "Authorization: Bearer $(refreshtoken token)" https://api.example.com/v1/things
//
// like gcloud auth print-access-token. It keeps the token in a state file
// (mode 0600) under the user's configuration directory, so that calls
// within the token's lifetime make no request, and a rotated refresh token
// is never lost.
//
// Usage:
//
//	refreshtoken login [flags]        sign in, to store the first refresh token
//	refreshtoken token [flags]        print a valid access token
//	refreshtoken demo [flags]         run the demo against a local token server
//	refreshtoken testserver [flags]   run a local Auth0-like server to try the command
//
// Configuration comes from flags or the environment: REFRESHTOKEN_TOKEN_URL,
// REFRESHTOKEN_CLIENT_ID, REFRESHTOKEN_CLIENT_SECRET, REFRESHTOKEN_AUDIENCE,
// REFRESHTOKEN_SCOPES. The first refresh token is read from a file, or
// from standard input with -refresh-token-file -, never from a flag, which
// other users can see in ps. The client secret comes from the environment
// or a file, for the same reason.
//
// Or login gets the first refresh token by signing in: in a browser, with
// the authorization code flow and PKCE, redirected to a listener on
// 127.0.0.1 (-redirect-port for a server that needs the port registered),
// or with -device, the device flow, for a machine without a browser. The
// authorization URLs default to Auth0's, from the token URL (-auth-url,
// -device-auth-url otherwise); the scope offline_access is always asked
// for. The session is stored in the state as token keeps it, bound to its
// server; a state that holds another server's session is replaced only
// with -replace. testserver runs a local Auth0-like server, which approves
// every sign-in at once, to try both commands.
//
// Invocations that share a state file run one at a time (a lock file beside
// it, on Unix), so that two of them never refresh with the same refresh
// token.
//
// Exit status: 0 success; 1 an error (the message on standard error says
// what to do); 2 a usage error; 3 the refresh token was rejected for good
// (sign in again and give the new one with -refresh-token-file).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	"github.com/tokenfresh/refreshtoken/internal/demo"
)

// Exit statuses.
const (
	exitError  = 1
	exitUsage  = 2
	exitReauth = 3
)

const usage = `usage:
  refreshtoken login [flags]        sign in, to store the first refresh token
  refreshtoken token [flags]        print a valid access token
  refreshtoken demo [flags]         run the demo against a local token server
  refreshtoken testserver [flags]   run a local Auth0-like server to try the command
  refreshtoken <command> -h         the flags of a command

exit status: 0 success, 1 error, 2 usage error, 3 sign in again
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run is the command, with its surroundings passed in for tests.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "token":
		return token(args[1:], stdin, stdout, stderr, getenv)
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "login":
		return login(args[1:], stdout, stderr, getenv)
	case "testserver":
		return testServer(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "refreshtoken: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("refreshtoken demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.Int("workers", 50, "goroutines calling the API")
	duration := fs.Duration("duration", 5*time.Second, "how long to run")
	lifetime := fs.Duration("lifetime", 2*time.Second, "access token lifetime (whole seconds)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if err := demo.Run(stdout, *workers, *duration, *lifetime); err != nil {
		fmt.Fprintln(stderr, "refreshtoken demo:", err)
		return exitError
	}
	return 0
}

// config is what the token command was told.
type config struct {
	tokenURL, clientID, audience, scopes string
	refreshTokenFile, secretFile         string
	state, profile                       string
	idToken, asJSON, showRefresh, force  bool
	jsonBody, basicAuth                  bool
	timeout                              time.Duration
}

func token(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var c config
	fs := flag.NewFlagSet("refreshtoken token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.tokenURL, "token-url", getenv("REFRESHTOKEN_TOKEN_URL"), "token endpoint, such as https://YOUR_DOMAIN/oauth/token (env REFRESHTOKEN_TOKEN_URL)")
	fs.StringVar(&c.clientID, "client-id", getenv("REFRESHTOKEN_CLIENT_ID"), "client ID (env REFRESHTOKEN_CLIENT_ID)")
	fs.StringVar(&c.secretFile, "client-secret-file", "", "file holding the client secret; default env REFRESHTOKEN_CLIENT_SECRET; none for a public client")
	fs.StringVar(&c.audience, "audience", getenv("REFRESHTOKEN_AUDIENCE"), "Auth0 audience (env REFRESHTOKEN_AUDIENCE)")
	fs.StringVar(&c.scopes, "scopes", getenv("REFRESHTOKEN_SCOPES"), "space-separated scopes, to narrow the granted ones (env REFRESHTOKEN_SCOPES)")
	fs.StringVar(&c.refreshTokenFile, "refresh-token-file", "", "file holding a refresh token, or - for standard input: replaces the stored one (needed the first time)")
	fs.StringVar(&c.profile, "profile", "default", "name of the state file under the user's configuration directory")
	fs.StringVar(&c.state, "state", "", "state file (default <config dir>/refreshtoken/<profile>.json)")
	fs.BoolVar(&c.idToken, "id-token", false, "print the ID token instead of the access token")
	fs.BoolVar(&c.asJSON, "json", false, "print the whole token as JSON (refresh token redacted)")
	fs.BoolVar(&c.showRefresh, "show-refresh-token", false, "with -json, include the refresh token")
	fs.BoolVar(&c.force, "refresh", false, "get a new access token even if the stored one is valid")
	fs.BoolVar(&c.jsonBody, "json-body", false, "send the refresh request as JSON instead of a form")
	fs.BoolVar(&c.basicAuth, "basic-auth", false, "send the client secret with HTTP Basic instead of in the body")
	fs.DurationVar(&c.timeout, "timeout", refreshtoken.DefaultRefreshTimeout, "bound on the refresh request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "refreshtoken token: %s\n", msg)
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected argument %q (the refresh token is never given as an argument: use -refresh-token-file)", fs.Arg(0)))
	case c.tokenURL == "":
		return usageErr("no token URL: set -token-url or REFRESHTOKEN_TOKEN_URL")
	case c.clientID == "":
		return usageErr("no client ID: set -client-id or REFRESHTOKEN_CLIENT_ID")
	case c.idToken && c.asJSON:
		return usageErr("-id-token and -json exclude each other")
	case c.showRefresh && !c.asJSON:
		return usageErr("-show-refresh-token goes with -json")
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "refreshtoken token: %v\n", err)
		return exitError
	}

	secret := getenv("REFRESHTOKEN_CLIENT_SECRET")
	if c.secretFile != "" {
		b, err := os.ReadFile(c.secretFile)
		if err != nil {
			return fail(err)
		}
		secret = strings.TrimSpace(string(b))
	}
	var refreshToken string
	if c.refreshTokenFile != "" {
		var b []byte
		var err error
		if c.refreshTokenFile == "-" {
			b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
		} else {
			b, err = os.ReadFile(c.refreshTokenFile)
		}
		if err != nil {
			return fail(err)
		}
		if refreshToken = strings.TrimSpace(string(b)); refreshToken == "" {
			return usageErr("the refresh token file is empty")
		}
	}
	if c.state == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return fail(fmt.Errorf("no configuration directory (%v): set -state", err))
		}
		c.state = filepath.Join(dir, "refreshtoken", c.profile+".json")
	}
	st, err := openState(c.state)
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	b := binding{TokenURL: c.tokenURL, ClientID: c.clientID, Audience: c.audience}
	if refreshToken != "" {
		if err := st.NewSession(b, &oauth2.Token{RefreshToken: refreshToken}); err != nil {
			return fail(err)
		}
	} else if _, err := st.Token(b); errors.Is(err, errNoToken) {
		return usageErr(fmt.Sprintf("no refresh token stored in %s yet: give one with -refresh-token-file (a file, or - for standard input)", c.state))
	} else if me := (*mismatchError)(nil); errors.As(err, &me) || errors.Is(err, errUnbound) {
		return usageErr(fmt.Sprintf("%v: nothing was sent.\nUse another profile for this server (-profile NAME), or replace the stored token with a new one (-refresh-token-file)", err))
	} else if err != nil {
		return fail(err)
	}
	store := st.store
	ctx := context.Background()

	conf := &oauth2.Config{ClientID: c.clientID, ClientSecret: secret, Scopes: strings.Fields(c.scopes),
		Endpoint: oauth2.Endpoint{TokenURL: c.tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	if c.basicAuth {
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	opts := []refreshtoken.Option{refreshtoken.WithStore(store), refreshtoken.WithRefreshTimeout(c.timeout)}
	if c.audience != "" {
		opts = append(opts, refreshtoken.WithEndpointParams(url.Values{"audience": {c.audience}}))
	}
	if c.jsonBody {
		opts = append(opts, refreshtoken.WithJSONBody())
	}
	ts := refreshtoken.New(ctx, conf, &oauth2.Token{}, opts...)
	defer ts.Close()

	tok, err := get(ts, c.force)
	// Close waits for a refresh started in the background, so that the
	// token it brings is saved before the process exits, and saves once
	// more a token whose Save failed.
	if cerr := ts.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if errors.Is(err, refreshtoken.ErrRefreshRejected) {
		fmt.Fprintf(stderr, "refreshtoken token: %v\nSign in again, then give the new refresh token with -refresh-token-file.\n", err)
		return exitReauth
	}
	if err != nil {
		return fail(err)
	}

	switch {
	case c.idToken:
		id, _ := tok.Extra("id_token").(string)
		if id == "" {
			return fail(errors.New("the token has no ID token: its scope must include openid"))
		}
		fmt.Fprintln(stdout, id)
	case c.asJSON:
		return printJSON(stdout, stderr, store, tok, c.showRefresh)
	default:
		fmt.Fprintln(stdout, tok.AccessToken)
	}
	return 0
}

// get returns a valid token, a new one if force is set. A new token that
// could not be saved is saved again, a few times: the process is about to
// exit, and with rotation its refresh token is the only valid one.
func get(ts *refreshtoken.TokenSource, force bool) (*oauth2.Token, error) {
	tok, err := ts.Token()
	if err == nil && force {
		ts.InvalidateToken(tok)
		tok, err = ts.Token()
	}
	for i := 0; errors.Is(err, refreshtoken.ErrNotSaved) && i < 3; i++ {
		time.Sleep(time.Second)
		if err = ts.Flush(); err == nil {
			tok, err = ts.Token()
		}
	}
	if errors.Is(err, refreshtoken.ErrNotSaved) {
		return nil, fmt.Errorf("%w\nThe refresh token was rotated but could not be saved, so the stored one is no longer valid: sign in again once the state file can be written", err)
	}
	return tok, err
}

// printJSON prints the token as stored (with its real expiry), the refresh
// token redacted unless asked for.
func printJSON(stdout, stderr io.Writer, store *filestore.Store, tok *oauth2.Token, showRefresh bool) int {
	if stored, err := store.Load(context.Background()); err == nil && stored != nil && stored.AccessToken == tok.AccessToken {
		tok = stored
	}
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
		fmt.Fprintf(stderr, "refreshtoken token: %v\n", err)
		return exitError
	}
	stdout.Write(b.Bytes())
	return 0
}
