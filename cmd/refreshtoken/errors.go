package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

// The commands' messages, for a person at a shell: what happened, then
// what to do, under one prefix, "refreshtoken <command>: ". The library's
// errors hold no secret, but are written for a program (they name its
// API); they are explained here, with the server's own words quoted.

// usageError is a mistake in how the command was called: exit 2. An empty
// message has been printed already (by the flag package).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// signIn says how to get a new session into the state.
const signIn = "run refreshtoken login (with the same -token-url, -client-id, -audience and -profile), or give a refresh token with -refresh-token-file (a file, or - for standard input)"

const signInAgain = "Sign in again: " + signIn + "."

// report prints err for the command cmd and returns the exit status.
func report(stderr io.Writer, cmd string, err error) int {
	msg, code := explain(err)
	if msg != "" {
		fmt.Fprintf(stderr, "refreshtoken %s: %s\n", cmd, msg)
	}
	return code
}

// explain returns the message for err, and the exit status.
func explain(err error) (string, int) {
	var (
		usage    *usageError
		mismatch *mismatchError
		dir      *stateDirError
		gaveUp   *gaveUpError
	)
	switch {
	case errors.As(err, &usage):
		return usage.msg, exitUsage
	case errors.As(err, &mismatch), errors.Is(err, errUnbound):
		return fmt.Sprintf("%v; nothing was sent.\nUse another profile for this server (-profile NAME), or replace the stored session: sign in with refreshtoken login -replace, or give a refresh token with -refresh-token-file.", err), exitUsage
	case errors.Is(err, errNoToken):
		return fmt.Sprintf("%v yet: %s", err, signIn), exitUsage
	case errors.Is(err, errRejected):
		return "the server rejected the stored refresh token before; nothing was sent.\n" + signInAgain, exitReauth
	case errors.As(err, &dir):
		return fmt.Sprintf("%v\nNothing was sent. The directory must exist, or be one that can be made, and take new files: fix it, or keep the state elsewhere (-state FILE).", err), exitError
	case errors.Is(err, refreshtoken.ErrRefreshRejected):
		return rejection(err)
	case errors.Is(err, refreshtoken.ErrNotSaved):
		return fmt.Sprintf("the server issued a new refresh token, but it could not be saved (%v), and the stored one is no longer valid.\nFix the state file, then sign in again: %s.", cause(err), signIn), exitError
	case errors.As(err, &gaveUp):
		return failure(gaveUp), exitError
	}
	var (
		retry  *refreshtoken.RetryError
		answer *oauth2.RetrieveError
	)
	switch {
	case errors.As(err, &answer) && answer.Response != nil && answer.Response.StatusCode >= 500:
		// Not 503, which is retried: the server, or a gateway, failed
		// after it may have served the request.
		return fmt.Sprintf("%s.\nNot tried again: the server may have used up the refresh token before it failed. Try again in a moment; if it is rejected, sign in again.", describe(err)), exitError
	case errors.As(err, &answer) && answer.Response != nil:
		// An error answer that retrying at once would not change (a 4xx
		// other than 429): the request, not the refresh token, is wrong.
		return fmt.Sprintf("%s.\nCheck -token-url and how the request is sent (-json-body, -basic-auth). The stored refresh token is kept.", describe(err)), exitError
	case errors.As(err, &retry):
		return fmt.Sprintf("%s.\nNot tried again: the server may have used up the refresh token. Try again; if it is rejected, sign in again.", describe(retry.Err)), exitError
	}
	return cause(err).Error(), exitError
}

// rejection explains an answer that rejected the refresh for good. Only
// invalid_grant rejects the refresh token itself: the other codes are
// about the client or the request, and the refresh token is kept.
func rejection(err error) (string, int) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return cause(err).Error(), exitError
	}
	said := serverSaid(re)
	switch re.ErrorCode {
	case "invalid_grant":
		return "the server rejected the refresh token" + said + ": it has expired, was revoked, or was used twice.\n" + signInAgain, exitReauth
	case "invalid_client":
		return "the server did not accept the client" + said + ". Check the client ID (-client-id or REFRESHTOKEN_CLIENT_ID), the client secret (-client-secret-file or REFRESHTOKEN_CLIENT_SECRET; none for a public client), and whether the server wants it with HTTP Basic (-basic-auth). The stored refresh token is kept.", exitError
	case "unauthorized_client", "unsupported_grant_type":
		return "the server does not let this client use refresh tokens" + said + ". Check the client ID (-client-id or REFRESHTOKEN_CLIENT_ID), and that the client's settings on the server allow the refresh token grant. The stored refresh token is kept.", exitError
	case "invalid_scope":
		return "the server refused the scopes asked for" + said + ". -scopes (or REFRESHTOKEN_SCOPES) may only narrow the scopes granted at sign-in. The stored refresh token is kept.", exitError
	case "access_denied":
		return "the server denied access" + said + ": the user or the client may be blocked, or a rule of the server denied it. The stored refresh token is kept.", exitError
	}
	return "the server refused the refresh" + said + ". The stored refresh token is kept.", exitError
}

// sessionEnded explains that the server rejected the refresh token
// (err) while the access token printed, valid until expiry, was still
// valid.
func sessionEnded(err error, expiry time.Time) string {
	var re *oauth2.RetrieveError
	said := ""
	if errors.As(err, &re) {
		said = serverSaid(re)
	}
	return fmt.Sprintf("the server rejected the refresh token%s: the session has ended. The access token printed is valid until %s, but the next run will need a new session. Sign in again: %s.",
		said, expiry.Local().Format(time.RFC1123), signIn)
}

// failure explains a failure that may pass, after the last attempt.
func failure(e *gaveUpError) string {
	what := describe(e.err)
	if e.asked > 0 {
		return fmt.Sprintf("%s, and asks to wait %s, longer than is left of -timeout (%s). Try again then.", what, round(e.asked), e.timeout)
	}
	tries := "once"
	if e.attempts > 1 {
		tries = fmt.Sprintf("%d times", e.attempts)
	}
	return fmt.Sprintf("%s (tried %s within -timeout %s).\nTry again later, or with a longer -timeout.", what, tries, e.timeout)
}

// describe says what went wrong with a request.
func describe(err error) string {
	var (
		re  *oauth2.RetrieveError
		dns *net.DNSError
		op  *net.OpError
	)
	switch {
	case errors.As(err, &re) && re.Response != nil:
		what := "the token server answered HTTP " + statusText(re.Response.StatusCode) + serverSaid(re)
		if re.Response.StatusCode == http.StatusTooManyRequests {
			what = "the token server is limiting requests (HTTP 429)"
		}
		return what
	case errors.As(err, &dns):
		return fmt.Sprintf("the token server's host %q was not found: check -token-url", dns.Name)
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Sprintf("could not connect to the token server (%v)", unwrapSyscall(op.Err))
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "the token server did not answer in time"
	}
	return cause(err).Error()
}

// serverSaid quotes the error code and description of an answer (the
// library has redacted them), or returns "".
func serverSaid(re *oauth2.RetrieveError) string {
	if re.ErrorCode == "" {
		return ""
	}
	desc := re.ErrorDescription
	if r := []rune(desc); len(r) > 200 {
		desc = string(r[:200]) + "..."
	}
	if desc == "" {
		return fmt.Sprintf(" (%q)", re.ErrorCode)
	}
	return fmt.Sprintf(" (%q: %q)", re.ErrorCode, desc)
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return fmt.Sprint(code)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unwrapSyscall returns "connection refused" rather than "connect:
// connection refused".
func unwrapSyscall(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

func round(d time.Duration) time.Duration {
	return d.Round(time.Second)
}

// cause returns err without the library's prefixes ("refreshtoken: ",
// "filestore: "): the command's message has one prefix.
func cause(err error) error {
	var re *refreshtoken.RetryError
	if errors.As(err, &re) {
		err = re.Err // without "next attempt not before", meaningless to a command that exits
	}
	s := err.Error()
	for _, p := range []string{"refreshtoken: ", "filestore: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return errors.New(s)
}
