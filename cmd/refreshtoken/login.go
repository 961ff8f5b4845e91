package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken/sealedstore"
)

// loginConfig is what the login command was told.
type loginConfig struct {
	common
	authURL, deviceAuthURL     string
	device, noBrowser, replace bool
	redirectPort               int
	keys                       *sealedstore.Keyring // the state key, nil if none
}

// login signs the user in, in a browser (the authorization code grant
// with PKCE, redirected to a listener on the loopback interface) or with
// -device (the device authorization grant), and keeps the session in the
// state as the token command does, bound to its server.
func login(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var c loginConfig
	err := c.parse(args, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = c.run(stdout, stderr, getenv)
	}
	if err != nil {
		return report(stderr, "login", err)
	}
	return 0
}

// parse reads the flags and checks them.
func (c *loginConfig) parse(args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("refreshtoken login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs, getenv, "to ask for; offline_access is added")
	fs.StringVar(&c.authURL, "auth-url", "", "authorization endpoint (default: the token URL's .../oauth/token made .../authorize, as on Auth0)")
	fs.StringVar(&c.deviceAuthURL, "device-auth-url", "", "device authorization endpoint, for -device (default: the token URL's .../oauth/token made .../oauth/device/code, as on Auth0)")
	fs.BoolVar(&c.device, "device", false, "sign in with the device flow: a code to enter on another device's browser")
	fs.BoolVar(&c.noBrowser, "no-browser", false, "do not open a browser; only print the URL")
	fs.IntVar(&c.redirectPort, "redirect-port", 0, "loopback port for the browser's redirect, for a server that needs it registered (default any free port)")
	fs.BoolVar(&c.replace, "replace", false, "replace a session of another server stored in the state")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "how long to wait for the sign-in")
	if err := c.common.parse(fs, args); err != nil {
		return err
	}
	if c.redirectPort < 0 || c.redirectPort > 65535 {
		return &usageError{"-redirect-port must be a port number"}
	}
	// The Auth0 layout: https://DOMAIN/oauth/token, /authorize and
	// /oauth/device/code.
	if base, ok := strings.CutSuffix(c.tokenURL, "/oauth/token"); ok {
		if c.authURL == "" {
			c.authURL = base + "/authorize"
		}
		if c.deviceAuthURL == "" {
			c.deviceAuthURL = base + "/oauth/device/code"
		}
	}
	set, e, s := "-auth-url", authURL, c.authURL
	if c.device {
		set, e, s = "-device-auth-url", deviceAuthURL, c.deviceAuthURL
	}
	if s == "" {
		return &usageError{fmt.Sprintf("%s is not set, and the token URL does not end in /oauth/token to derive it from: set %s", e.name, set)}
	}
	return checkURL(e, s)
}

// run signs in and saves the session.
func (c *loginConfig) run(stdout, stderr io.Writer, getenv func(string) string) error {
	secret, err := c.secret(getenv)
	if err != nil {
		return err
	}
	scopes := strings.Fields(c.scopes)
	if !slices.Contains(scopes, "offline_access") {
		// Without it Auth0 issues no refresh token, and a sign-in
		// without one is of no use to the token command.
		scopes = append(scopes, "offline_access")
		fmt.Fprintln(stderr, "refreshtoken login: asking for the scope offline_access too, without which the server issues no refresh token")
	}
	if c.state, err = statePath(c.state, c.profile); err != nil {
		return err
	}
	if c.keys, err = c.stateKeys(getenv, ""); err != nil {
		return err
	}
	b := c.binding()
	// Checked now, so that nobody signs in for a session that cannot be
	// kept, and again when saving: the lock is not held meanwhile, since
	// the token command would wait for it as long as the person takes.
	if err := c.saveLogin(b, nil); err != nil {
		return err
	}

	conf := c.oauthConfig(secret, scopes)
	conf.Endpoint.AuthURL, conf.Endpoint.DeviceAuthURL = c.authURL, c.deviceAuthURL
	var params []oauth2.AuthCodeOption
	if c.audience != "" {
		params = append(params, oauth2.SetAuthURLParam("audience", c.audience))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var tok *oauth2.Token
	if c.device {
		tok, err = c.deviceFlow(ctx, conf, params, stderr)
	} else {
		tok, err = c.browserFlow(ctx, conf, params, stderr)
	}
	if err != nil {
		return err
	}
	if tok.RefreshToken == "" {
		return errors.New("signed in, but the server issued no refresh token: allow offline access for this client and API (on Auth0, turn on Allow Offline Access in the API's settings); nothing was stored")
	}
	if err := c.saveLogin(b, tok); err != nil {
		return err
	}
	c.report(stdout, tok)
	return nil
}

// saveLogin stores tok in the state as a new session bound to b, or with
// tok nil only checks that it could. The state may take it if it holds no
// session, one of the same server (signing in again replaces it), or one
// whose refresh token was rejected; a session of another server, or of an
// unknown one, only with -replace.
func (c *loginConfig) saveLogin(b binding, tok *oauth2.Token) error {
	st, err := openState(c.state, c.keys, b)
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = st.Token(b)
	var me *mismatchError
	switch {
	case err == nil, errors.Is(err, errNoToken), errors.Is(err, errRejected):
	case (errors.As(err, &me) || errors.Is(err, errUnbound)) && c.replace:
	case errors.As(err, &me) || errors.Is(err, errUnbound):
		return &usageError{fmt.Sprintf("%v: nothing was stored.\nSign in under another profile (-profile NAME) for this server, or replace that session with -replace", err)}
	default:
		return err
	}
	if tok == nil {
		return nil
	}
	return st.NewSession(b, tok)
}

// report says what was stored and what to run next, without the tokens.
func (c *loginConfig) report(stdout io.Writer, tok *oauth2.Token) {
	what := "a refresh token"
	if !tok.Expiry.IsZero() {
		what += fmt.Sprintf(" and an access token valid until %s", tok.Expiry.Local().Format(time.RFC1123))
	}
	if id, _ := tok.Extra("id_token").(string); id != "" {
		what += ", an ID token"
	}
	if sc, _ := tok.Extra("scope").(string); sc != "" {
		what += fmt.Sprintf(" (scope %q)", sc)
	}
	next := "refreshtoken token"
	if c.profile != "default" {
		next += " -profile " + c.profile
	}
	fmt.Fprintf(stdout, "Signed in. Stored %s in %s.\nNext, with the same settings: %s\n", what, c.state, next)
}

// browserFlow is the authorization code grant with PKCE (RFC 7636) on a
// loopback redirect (RFC 8252 §7.3).
func (c *loginConfig) browserFlow(ctx context.Context, conf *oauth2.Config, params []oauth2.AuthCodeOption, stderr io.Writer) (*oauth2.Token, error) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.redirectPort))
	if err != nil {
		return nil, fmt.Errorf("listening for the browser's redirect: %w", err)
	}
	conf.RedirectURL = "http://" + l.Addr().String() + "/callback"
	state := rand.Text()
	verifier := oauth2.GenerateVerifier()
	cb := newCallback(l, state)
	defer cb.close()

	u := conf.AuthCodeURL(state, append(params, oauth2.S256ChallengeOption(verifier))...)
	fmt.Fprintf(stderr, "Sign in with a browser, at:\n\n  %s\n\n", u)
	if !c.noBrowser && openBrowser(u) {
		fmt.Fprintln(stderr, "(opened in your browser)")
	}
	fmt.Fprintf(stderr, "Waiting for the browser's answer on %s (at most %v)...\n", conf.RedirectURL, c.timeout)
	var ans answer
	select {
	case ans = <-cb.answers:
	case <-ctx.Done():
		err := fmt.Errorf("no answer from the browser within %v: open the URL above, or give more time with -timeout", c.timeout)
		select {
		case ans := <-cb.answers: // one that came at the last moment
			ans.done <- err
		default:
		}
		return nil, err
	}
	if ans.err != nil {
		ans.done <- ans.err
		return nil, ans.err
	}
	tok, err := conf.Exchange(ctx, ans.code, oauth2.VerifierOption(verifier))
	if err != nil {
		err = grantError("exchanging the code", err, conf.ClientSecret, verifier, ans.code)
	}
	ans.done <- err
	return tok, err
}

// deviceFlow is the device authorization grant (RFC 8628).
func (c *loginConfig) deviceFlow(ctx context.Context, conf *oauth2.Config, params []oauth2.AuthCodeOption, stderr io.Writer) (*oauth2.Token, error) {
	// DeviceAuth's request does not carry ctx (x/oauth2 v0.38.0), so
	// its client bounds it: a server that never answers must not keep
	// the login past -timeout.
	daCtx := context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: c.timeout})
	da, err := conf.DeviceAuth(daCtx, params...)
	switch {
	case err != nil && isTimeout(err):
		return nil, fmt.Errorf("starting the device flow: the device authorization URL did not answer within %v", c.timeout)
	case err != nil:
		return nil, grantError("starting the device flow", err, conf.ClientSecret)
	}
	// Shown to the person: the server's words must not carry terminal
	// control sequences, nor send them to a page other than http(s).
	if !webURL(da.VerificationURI) || !printable(da.UserCode) || len(da.UserCode) > 64 ||
		(da.VerificationURIComplete != "" && !webURL(da.VerificationURIComplete)) {
		return nil, errors.New("the device authorization answer has no usable verification URI or user code (not shown)")
	}
	fmt.Fprintf(stderr, "On any device's browser, open\n\n  %s\n\nand enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(stderr, "or open, with the code in it:\n\n  %s\n\n", da.VerificationURIComplete)
	}
	fmt.Fprintf(stderr, "Waiting for the approval (at most %v)...\n", c.timeout)
	tok, err := conf.DeviceAccessToken(ctx, da)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("no approval within %v: open the URL above, or give more time with -timeout", c.timeout)
	case err != nil:
		return nil, grantError("waiting for the approval", err, conf.ClientSecret, da.DeviceCode)
	}
	return tok, nil
}

// grantError describes a failed request of the sign-in, without the
// response body, and with the secrets of the exchange taken out of
// whatever the server sent back.
func grantError(doing string, err error, secrets ...string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s: %s", doing, scrub(err.Error(), secrets))
	}
	said := serverSaid(&oauth2.RetrieveError{ErrorCode: scrub(re.ErrorCode, secrets), ErrorDescription: scrub(re.ErrorDescription, secrets)})
	if re.Response != nil {
		return fmt.Errorf("%s: the server answered HTTP %s%s", doing, statusText(re.Response.StatusCode), said)
	}
	return fmt.Errorf("%s: the server refused%s", doing, said)
}

// scrub replaces the secrets in s, in the forms a server may echo them in.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) < 4 {
			continue // an empty or tiny secret would scrub everything
		}
		for _, form := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
			s = strings.ReplaceAll(s, form, "[redacted]")
		}
	}
	return s
}

// webURL reports whether s is an http(s) URL that is safe to print.
func webURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && printable(s) && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// printable reports whether s is non-empty printable ASCII.
func printable(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r >= 0x7f })
}
