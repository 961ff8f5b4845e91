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
//	refreshtoken logout [flags]       revoke the stored refresh token and delete the session
//	refreshtoken keygen -key-file F   write a new key to encrypt the state with (-key-file)
//	refreshtoken encrypt [flags]      encrypt the stored session with the key (-key-file)
//	refreshtoken version              print the version
//	refreshtoken demo [flags]         run the demo against a local token server
//	refreshtoken testserver [flags]   run a local Auth0-like server to try the command
//
// Configuration comes from flags or the environment: REFRESHTOKEN_TOKEN_URL,
// REFRESHTOKEN_CLIENT_ID, REFRESHTOKEN_CLIENT_SECRET, REFRESHTOKEN_AUDIENCE,
// REFRESHTOKEN_SCOPES; login and token share them, and the state they
// name. The token URL (and login's authorization URLs) must use https;
// plain http is accepted only to a loopback host (localhost, 127.0.0.1,
// ::1), for testing.
//
// The first refresh token is read from a file, or from standard input
// with -refresh-token-file -, never from a flag or an argument, which
// other users can see in ps. The input is one line (the refresh token) or
// a JSON token response, whose refresh_token is taken and the rest
// ignored. Standard input must be a pipe or a file, not a terminal:
//
//	refreshtoken token -refresh-token-file - < refresh-token.txt
//	pass show auth0/refresh-token | refreshtoken token -refresh-token-file -
//
// The client secret comes from the environment or a file, for the same
// reason.
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
// The state is per profile (-profile NAME, default "default"), in
// <config dir>/refreshtoken/NAME.json, or the file given with -state. A
// state belongs to the server its refresh token came from: the token URL,
// client ID and audience are recorded beside it (NAME.json.meta), and a
// refresh token is never sent to another server. A call with another
// token URL, client ID or audience sends nothing and exits 2: use another
// profile for the other server, or give a new refresh token, which
// replaces the stored one. A refresh token the server rejected
// (invalid_grant) is recorded, by a fingerprint (the first 8 hex digits of
// its SHA-256), and not sent again: later calls exit 3 at once, until a
// new session is stored. A rejection met while refreshing a token that is
// still valid, in its last minutes, is recorded too: that token is
// printed, with a warning that the session has ended.
//
// With -key-file FILE (a key made by keygen: base64 of 32 random bytes,
// mode 0600) or REFRESHTOKEN_STATE_KEY (the same base64), the state file
// is encrypted with AES-256-GCM, bound to its server (token URL, client
// ID, audience): a backup or a copy of it holds no usable token, and it
// opens only for its server. Give the key to login, token and logout
// alike. A state read without its key, with another key, or for another
// server sends nothing and exits 2. encrypt encrypts a plain state, or,
// with -old-key-file, moves an encrypted one to a new key. The key is
// not kept in the OS keyring, which needs a D-Bus Secret Service that
// servers, containers and SSH sessions lack. docs/encryption.md says
// where to keep the key.
//
// Invocations that share a state file run one at a time (a lock file
// beside it, NAME.json.lock, on Unix), so that two of them never refresh
// with the same refresh token. Before it sends anything, an invocation
// checks that it can save a new token in the state's directory. A failure
// that may pass (the server unreachable, HTTP 429 or 503) is tried again a
// few times within -timeout, waiting as long as the server asks with
// Retry-After (or not at all, if that is past -timeout); an answer that is
// lost after the request was sent, or another 5xx, is not, since the
// server may have rotated the refresh token.
//
// logout signs out: it sends the stored refresh token to the server's
// revocation endpoint (RFC 7009; on Auth0 the token URL's .../oauth/token
// made .../oauth/revoke, -revoke-url otherwise), with the same client
// authentication as token, then deletes the session (the state and its
// meta file). If the server cannot be reached or does not revoke the
// token, the session is kept and logout exits 1; -force deletes it all the
// same (the refresh token then stays valid at the server until it
// expires), and still exits 1. A profile with no session, or whose refresh
// token the server rejected before, is signed out with nothing sent.
//
// With -v, token logs what it does on standard error (refreshes, with
// their outcome and timing, and the state's reads and saves, as
// refreshtoken.SlogObserver does at debug level): never a token or secret;
// a refresh token appears only as its fingerprint.
//
// Exit status:
//
//	0  success
//	1  an error: the server unreachable or failing, a client that the server
//	   does not accept (-client-id, the client secret, -basic-auth), a file
//	   that cannot be read or written; the message says what to do
//	2  a usage error: flags, arguments, the refresh token given, no
//	   refresh token stored yet, or a state that belongs to another server
//	3  the refresh token was rejected (invalid_grant), now or before: sign
//	   in again with login (the same -token-url, -client-id, -audience and
//	   -profile), or give a new refresh token with -refresh-token-file
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

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
  refreshtoken logout [flags]       revoke the stored refresh token and delete the session
  refreshtoken keygen -key-file F   write a new key to encrypt the state with (-key-file)
  refreshtoken encrypt [flags]      encrypt the stored session with the key (-key-file)
  refreshtoken version              print the version
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
	case "version":
		return version(stdout)
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "login":
		return login(args[1:], stdout, stderr, getenv)
	case "logout":
		return logout(args[1:], stdout, stderr, getenv)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "encrypt":
		return encrypt(args[1:], stdout, stderr, getenv)
	case "testserver":
		return testServer(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	// A word that is not a command may be a pasted secret: it is shown
	// only if it looks like a mistyped command.
	if commandLike(args[0]) {
		fmt.Fprintf(stderr, "refreshtoken: unknown command %q\n%s", args[0], usage)
	} else {
		fmt.Fprintf(stderr, "refreshtoken: unknown command (not shown: it may be a secret)\n%s", usage)
	}
	return exitUsage
}

// commandLike reports whether s could be a mistyped command: a short word
// of lowercase letters and dashes.
func commandLike(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

// version prints the module's version, "(devel)" when built from a
// checkout, and the Go version it was built with.
func version(stdout io.Writer) int {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	fmt.Fprintf(stdout, "refreshtoken %s %s\n", v, runtime.Version())
	return 0
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("refreshtoken demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.Int("workers", 50, "goroutines calling the API")
	duration := fs.Duration("duration", 5*time.Second, "how long to run")
	lifetime := fs.Duration("lifetime", 2*time.Second, "access token lifetime (whole seconds)")
	verbose := fs.Bool("v", false, "log the source's refreshes on standard error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	var log io.Writer
	if *verbose {
		log = stderr
	}
	if err := demo.Run(stdout, log, *workers, *duration, *lifetime); err != nil {
		fmt.Fprintln(stderr, "refreshtoken demo:", err)
		return exitError
	}
	return 0
}
