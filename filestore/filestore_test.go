package filestore

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
)

var ctx = context.Background()

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "token.json")
	s := New(path)
	if tok, err := s.Load(ctx); tok != nil || err != nil {
		t.Fatalf("Load() of a missing file = %v, %v; want nil, nil", tok, err)
	}
	want := (&oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)}).
		WithExtra(map[string]any{"id_token": "id.jwt.sig", "scope": "openid offline_access", "other": 1})
	if err := s.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(oauth2.Token{})); diff != "" {
		t.Errorf("Load() mismatch (-want +got):\n%s", diff)
	}
	for _, k := range []string{"id_token", "scope"} {
		if got.Extra(k) != want.Extra(k) {
			t.Errorf("Extra(%q) = %v, want %v", k, got.Extra(k), want.Extra(k))
		}
	}
	for p, wantMode := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != wantMode {
			t.Errorf("%s has mode %#o, want %#o", p, fi.Mode().Perm(), wantMode)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the token file", len(entries))
	}
}

func TestRefusesOpenFile(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o606, 0o660} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token.json")
			s := New(path)
			if err := s.Save(ctx, &oauth2.Token{AccessToken: "at", RefreshToken: "rt-SECRET"}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load(ctx)
			if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Errorf("Load() error = %v, want one that names the fix: chmod 600 %s", err, path)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
}

func TestNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := exec.Command("mkfifo", "-m", "600", fifo).Run(); err != nil {
		t.Skip("no mkfifo:", err)
	}
	for _, path := range []string{fifo, dir} {
		if _, err := New(path).Load(ctx); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Load(%s) error = %v, want not a regular file", path, err)
		}
	}
}

func TestNotATokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.json")
	if err := os.WriteFile(path, []byte(`{"refresh_token":"rt-SECRET",`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(path).Load(ctx)
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "not a token file") {
		t.Errorf("Load() error = %v, want a clear error without the content", err)
	}
}

// TestConcurrentSaves: after Saves from many goroutines the file holds one
// whole token, never parts of two.
func TestConcurrentSaves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.json")
	s := New(path)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := fmt.Sprint(i)
			if err := s.Save(ctx, &oauth2.Token{AccessToken: "at-" + n, RefreshToken: "rt-" + n}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	tok, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimPrefix(tok.AccessToken, "at-") != strings.TrimPrefix(tok.RefreshToken, "rt-") {
		t.Errorf("torn token: %+v", tok)
	}
}

// crashWorkerEnv names the file a re-executed test binary saves tokens to,
// in a loop, until it is killed.
const crashWorkerEnv = "FILESTORE_CRASH_WORKER"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashWorkerEnv); path != "" {
		crashWorker(path)
		return
	}
	os.Exit(m.Run())
}

// crashWorker saves token 1, 2, 3, ... and prints each number once its
// Save has returned.
func crashWorker(path string) {
	s := New(path)
	out := bufio.NewWriter(os.Stdout)
	for i := 1; ; i++ {
		n := strconv.Itoa(i)
		// A token of a few kilobytes, so that a write takes a while.
		if err := s.Save(ctx, &oauth2.Token{AccessToken: "at-" + n + "-" + strings.Repeat("x", 4096), RefreshToken: "rt-" + n}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintln(out, n)
		out.Flush()
	}
}

// TestSurvivesKill kills a process that saves tokens in a loop, at random
// points, many times: the file always holds a whole token, the last one
// whose Save returned or the one being saved. (A kill leaves the kernel's
// page cache intact: this proves the atomic rename, not the fsyncs, which
// only a power cut would test.)
func TestSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 40 times")
	}
	path := filepath.Join(t.TempDir(), "token.json")
	for run := range 40 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWorkerEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of completed Saves: the kill lands
		// wherever the worker then is in its next Save.
		acked, target := 0, 1+rand.IntN(50)
		lines := bufio.NewScanner(stdout)
		for acked < target && lines.Scan() {
			acked, _ = strconv.Atoi(lines.Text())
		}
		cmd.Process.Kill()
		for lines.Scan() { // Saves that returned before the kill landed
			acked, _ = strconv.Atoi(lines.Text())
		}
		cmd.Wait()

		tok, err := New(path).Load(ctx)
		if err != nil {
			t.Fatalf("run %d: after a kill, Load() = %v", run, err)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(tok.RefreshToken, "rt-"))
		if err != nil || !strings.HasPrefix(tok.AccessToken, "at-"+strconv.Itoa(n)+"-") {
			t.Fatalf("run %d: torn or foreign token %.40q / %q", run, tok.AccessToken, tok.RefreshToken)
		}
		// Each run starts again at 1, over the last run's file.
		if n != acked && n != acked+1 && !(acked == 0 && run > 0) {
			t.Fatalf("run %d: file holds token %d, last acknowledged %d", run, n, acked)
		}
	}
}

// TestClampedExpiryRoundTrips: a token whose JWT exp is in milliseconds (a
// server bug) is saved and loaded with its expiry, which the source bounds
// to a year after the request; unbounded, it would be 50,000 years away,
// which JSON cannot hold.
func TestClampedExpiryRoundTrips(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	enc := base64.RawURLEncoding.EncodeToString
	access := enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"exp":1.8e12}`)) + ".sig"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","refresh_token":"rt2"}`, access)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "token.json")
	conf := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL}}
	ts := refreshtoken.New(ctx, conf, &oauth2.Token{RefreshToken: "rt1"},
		refreshtoken.WithStore(New(path)), refreshtoken.WithClock(func() time.Time { return t0 }))
	defer ts.Close()
	if _, err := ts.Token(); err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	got, err := New(path).Load(ctx)
	if err != nil || got == nil {
		t.Fatalf("Load() = %v, %v; want the saved token", got, err)
	}
	if want := t0.Add(365 * 24 * time.Hour); !got.Expiry.Equal(want) || got.AccessToken != access || got.RefreshToken != "rt2" {
		t.Errorf("Load() = {Expiry %v, AccessToken %q, RefreshToken %q}, want {%v, %q, %q}", got.Expiry, got.AccessToken, got.RefreshToken, want, access, "rt2")
	}
}
