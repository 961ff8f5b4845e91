package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// testServer runs refreshtokentest's Auth0-like server as a process, for a
// person to try login and token against, until SIGINT or SIGTERM. The
// client is public by default, so that login needs no secret;
// -confidential gives it the secret "test-secret".
func testServer(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("refreshtoken testserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	lifetime := fs.Duration("lifetime", time.Hour, "access token lifetime (whole seconds)")
	noRotation := fs.Bool("no-rotation", false, "keep refresh tokens valid across refreshes instead of rotating them")
	confidential := fs.Bool("confidential", false, "a confidential client, with the secret test-secret, instead of a public one")
	interval := fs.Duration("device-interval", 5*time.Second, "polling interval of the device grant (whole seconds)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "refreshtoken testserver: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "refreshtoken testserver: %v\n", err)
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Listener: l, Lifetime: *lifetime,
		NoRotation: *noRotation, Public: !*confidential, DeviceInterval: *interval})
	defer srv.Close()

	client := "test-client (public: no secret)"
	env := "REFRESHTOKEN_TOKEN_URL=" + srv.TokenURL + " REFRESHTOKEN_CLIENT_ID=test-client"
	if *confidential {
		// The test server's secret guards nothing but the test server.
		client = "test-client, secret test-secret"
		env += " REFRESHTOKEN_CLIENT_SECRET=test-secret"
	}
	rotation := "refresh tokens rotate, and one used twice revokes its family"
	if *noRotation {
		rotation = "refresh tokens do not rotate"
	}
	// Printing a refresh token breaks the command's rule, but this one
	// is the test server's own: it opens nothing but this process's /api,
	// and dies with the process. It lets a person try token without a
	// login.
	rt := srv.NewRefreshToken("openid offline_access")
	fmt.Fprintf(stdout, `refreshtoken test server on %s: an Auth0-like server that approves every sign-in at once; its tokens open only its own /api
  token URL:  %s
  client ID:  %s
  access tokens live %v; %s

Sign in, in a browser or as a device, into a profile of its own:
  export %s
  refreshtoken login -profile testserver
  refreshtoken login -profile testserver -device
Then:
  refreshtoken token -profile testserver
  curl -H "Authorization: Bearer $(refreshtoken token -profile testserver)" %s

Or, without a login, start from this refresh token (scope openid offline_access):
  echo %s | refreshtoken token -profile testserver -refresh-token-file -

Stop with Ctrl-C.
`, srv.URL, srv.TokenURL, client, *lifetime, rotation, env, srv.APIURL, rt)
	<-ctx.Done()
	stop()
	fmt.Fprintln(stderr, "refreshtoken testserver: stopping")
	return 0
}
