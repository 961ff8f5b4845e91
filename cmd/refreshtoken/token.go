package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// config is what the token command was told.
type config struct {
	common
	refreshTokenFile                    string
	idToken, asJSON, showRefresh, force bool
	jsonBody, verbose                   bool
	// log receives, with -v, what the source does (SlogObserver's
	// events: never a secret); nil without.
	log io.Writer
}

// parse reads the token command's flags and checks them.
func (c *config) parse(args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("refreshtoken token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs, getenv, "to narrow the granted ones")
	fs.StringVar(&c.refreshTokenFile, "refresh-token-file", "", "file holding a refresh token (one line, or a JSON token response), or - for standard input (a pipe, not a terminal): replaces the stored one")
	fs.BoolVar(&c.idToken, "id-token", false, "print the ID token instead of the access token")
	fs.BoolVar(&c.asJSON, "json", false, "print the whole token as JSON (refresh token redacted)")
	fs.BoolVar(&c.showRefresh, "show-refresh-token", false, "with -json, include the refresh token")
	fs.BoolVar(&c.force, "refresh", false, "get a new access token even if the stored one is valid")
	fs.BoolVar(&c.jsonBody, "json-body", false, "send the refresh request as JSON instead of a form")
	fs.BoolVar(&c.verbose, "v", false, "log what is done (refreshes, the state's reads and saves) on standard error; never a token or secret")
	fs.DurationVar(&c.timeout, "timeout", refreshtoken.DefaultRefreshTimeout, "how long to try, retries included")
	if err := c.common.parse(fs, args); err != nil {
		return err
	}
	switch {
	case c.idToken && c.asJSON:
		return &usageError{"-id-token and -json exclude each other"}
	case c.showRefresh && !c.asJSON:
		return &usageError{"-show-refresh-token goes with -json"}
	}
	return nil
}

func token(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var c config
	if err := c.parse(args, stderr, getenv); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return report(stderr, "token", err)
	}
	if c.verbose {
		c.log = stderr
	}
	tok, ended, err := c.token(stdin, getenv)
	if err != nil {
		return report(stderr, "token", err)
	}
	if ended != nil {
		fmt.Fprintf(stderr, "refreshtoken token: warning: %s\n", sessionEnded(ended, tok.Expiry))
	}
	switch {
	case c.idToken:
		id, _ := tok.Extra("id_token").(string)
		if id == "" {
			return report(stderr, "token", errors.New("the token has no ID token: sign in with a scope that includes openid"))
		}
		fmt.Fprintln(stdout, id)
	case c.asJSON:
		if err := printJSON(stdout, tok, c.showRefresh); err != nil {
			return report(stderr, "token", err)
		}
	default:
		fmt.Fprintln(stdout, tok.AccessToken)
	}
	return 0
}

// token returns a valid token: the stored one, or a refreshed one. ended
// is the server's rejection of the refresh token, if the stored token was
// returned after it: the next run must sign in.
func (c *config) token(stdin io.Reader, getenv func(string) string) (tok *oauth2.Token, ended, err error) {
	secret, err := c.secret(getenv)
	if err != nil {
		return nil, nil, err
	}
	var given string
	if c.refreshTokenFile != "" {
		if given, err = readRefreshToken(c.refreshTokenFile, stdin); err != nil {
			return nil, nil, err
		}
	}
	path, err := statePath(c.state, c.profile)
	if err != nil {
		return nil, nil, err
	}
	keys, err := c.stateKeys(getenv, "")
	if err != nil {
		return nil, nil, err
	}
	st, err := openState(path, keys, c.binding())
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	b := c.binding()
	if given != "" {
		err = st.NewSession(b, &oauth2.Token{RefreshToken: given})
	} else {
		_, err = st.Token(b)
	}
	if err != nil {
		return nil, nil, err
	}

	conf := c.oauthConfig(secret, strings.Fields(c.scopes))
	var opts []refreshtoken.Option
	if c.audience != "" {
		opts = append(opts, refreshtoken.WithEndpointParams(url.Values{"audience": {c.audience}}))
	}
	if c.jsonBody {
		opts = append(opts, refreshtoken.WithJSONBody())
	}
	if c.log != nil {
		log := slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		opts = append(opts, refreshtoken.WithObserver(refreshtoken.SlogObserver(log)))
	}
	f := &fetch{conf: conf, opts: opts, st: st, force: c.force, timeout: c.timeout}
	tok, err = f.token()
	return tok, f.ended, err
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
