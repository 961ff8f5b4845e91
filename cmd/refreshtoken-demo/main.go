// Command refreshtoken-demo shows a refreshtoken.TokenSource at work
// against a local Auth0-like token server, with no network or account.
//
// It starts the server from package refreshtokentest on loopback, with
// short-lived access tokens and refresh token rotation with reuse
// detection, shares one TokenSource among many goroutines that call the
// server's protected API through oauth2.NewClient, and prints what happened.
// It exits with status 1 if any API call was rejected or any refresh token
// was reused.
//
// Usage:
//
//	go run ./cmd/refreshtoken-demo [-workers 50] [-duration 5s] [-lifetime 2s]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

func main() {
	workers := flag.Int("workers", 50, "goroutines calling the API")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	lifetime := flag.Duration("lifetime", 2*time.Second, "access token lifetime (whole seconds)")
	flag.Parse()
	if err := run(os.Stdout, *workers, *duration, *lifetime); err != nil {
		fmt.Fprintln(os.Stderr, "refreshtoken-demo:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, workers int, duration, lifetime time.Duration) error {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: lifetime})
	defer srv.Close()
	fmt.Fprintf(out, "token server on %s: %v access tokens, rotating refresh tokens with reuse detection\n", srv.URL, lifetime)

	var rotations atomic.Int32
	ts := refreshtoken.New(context.Background(), srv.Config(),
		&oauth2.Token{RefreshToken: srv.NewRefreshToken("openid offline_access")},
		refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
			rotations.Add(1) // a real service would save tok.RefreshToken here
			return nil
		}))
	defer ts.Close()
	client := oauth2.NewClient(context.Background(), ts)

	var calls, failed atomic.Int64
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				calls.Add(1)
				resp, err := client.Get(srv.APIURL)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				time.Sleep(time.Millisecond) // a service does other work between calls
			}
		}()
	}
	wg.Wait()

	st := srv.Stats()
	fmt.Fprintf(out, "%d goroutines for %v, one shared TokenSource through oauth2.NewClient:\n", workers, duration)
	fmt.Fprintf(out, "  API calls made:           %d\n", calls.Load())
	fmt.Fprintf(out, "  API calls rejected (401): %d\n", st.APIRejected)
	fmt.Fprintf(out, "  other failed calls:       %d\n", failed.Load()-int64(st.APIRejected))
	fmt.Fprintf(out, "  token endpoint requests:  %d (at most one per half token lifetime: %d)\n", st.TokenRequests, int(2*duration/lifetime)+1)
	fmt.Fprintf(out, "  refreshes:                %d (rotated refresh tokens saved: %d)\n", st.Refreshes, rotations.Load())
	fmt.Fprintf(out, "  reuse events:             %d\n", st.ReuseEvents)
	if st.APIRejected > 0 || st.ReuseEvents > 0 || failed.Load() > 0 {
		return fmt.Errorf("%d rejected or failed calls, %d reuse events", failed.Load(), st.ReuseEvents)
	}
	fmt.Fprintln(out, "ok: no caller used an expired token, no refresh token was sent twice")
	return nil
}
