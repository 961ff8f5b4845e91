// Package demo is the demo of refreshtoken, shared by the refreshtoken
// command and cmd/refreshtoken-demo: a local Auth0-like token server with
// short-lived tokens and rotation, one TokenSource shared by many goroutines
// calling its API through oauth2.NewClient, and what happened.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// Run runs the demo and writes what happened to out, and, if log is not
// nil, what the source does (refreshtoken.SlogObserver at debug level). It
// returns an error if any API call was rejected or failed, or any refresh
// token was reused.
func Run(out, log io.Writer, workers int, duration, lifetime time.Duration) error {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{Lifetime: lifetime})
	defer srv.Close()
	fmt.Fprintf(out, "token server on %s: %v access tokens, rotating refresh tokens with reuse detection\n", srv.URL, lifetime)

	var rotations atomic.Int32
	opts := []refreshtoken.Option{refreshtoken.WithOnNewToken(func(_ context.Context, tok *oauth2.Token) error {
		rotations.Add(1) // a real service would save tok.RefreshToken here
		return nil
	})}
	if log != nil {
		logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		opts = append(opts, refreshtoken.WithObserver(refreshtoken.SlogObserver(logger)))
	}
	ts := refreshtoken.New(context.Background(), srv.Config(),
		&oauth2.Token{RefreshToken: srv.NewRefreshToken("openid offline_access")}, opts...)
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
