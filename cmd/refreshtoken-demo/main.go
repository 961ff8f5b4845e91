// Command refreshtoken-demo shows a refreshtoken.TokenSource at work
// against a local Auth0-like token server, with no network or account.
//
// It starts the server from package refreshtokentest on loopback, with
// short-lived access tokens and refresh token rotation with reuse
// detection, shares one TokenSource among many goroutines that call the
// server's protected API through oauth2.NewClient, and prints what happened.
// It exits with status 1 if any API call was rejected or any refresh token
// was reused. "refreshtoken demo" runs the same.
//
// Usage:
//
//	go run ./cmd/refreshtoken-demo [-workers 50] [-duration 5s] [-lifetime 2s] [-v]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tokenfresh/refreshtoken/internal/demo"
)

func main() {
	workers := flag.Int("workers", 50, "goroutines calling the API")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	lifetime := flag.Duration("lifetime", 2*time.Second, "access token lifetime (whole seconds)")
	verbose := flag.Bool("v", false, "log the source's refreshes on standard error")
	flag.Parse()
	var log io.Writer
	if *verbose {
		log = os.Stderr
	}
	if err := demo.Run(os.Stdout, log, *workers, *duration, *lifetime); err != nil {
		fmt.Fprintln(os.Stderr, "refreshtoken-demo:", err)
		os.Exit(1)
	}
}
