package filestore

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
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
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

var ctx = context.Background()

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "token.json")
	s := New(path)
	if tok, err := s.Load(ctx); tok != nil || err != nil {
		t.Fatalf("Load() of a missing file = %v, %v; want nil, nil", tok, err)
	}
	want := (&oauth2.Token{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt", Expiry: time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)}).
		WithExtra(map[string]any{"id_token": "id.jwt.sig", "scope": "openid offline_access", "other": 1,
			refreshtoken.ExtraRefreshTokenExpiry: "2026-12-25T13:00:00.5Z", refreshtoken.ExtraRefreshTokenFamily: "2026-11-25T12:00:00Z",
			refreshtoken.ExtraDPoPThumbprint: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
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
	for _, k := range []string{"id_token", "scope", refreshtoken.ExtraRefreshTokenExpiry, refreshtoken.ExtraRefreshTokenFamily, refreshtoken.ExtraDPoPThumbprint} {
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

// TestRefusesOpenFile: Load and Save refuse a file that other users can
// read or write, and Save leaves it as it was.
func TestRefusesOpenFile(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o606, 0o660, 0o620, 0o604, 0o602} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token.json")
			s := New(path)
			if err := s.Save(ctx, &oauth2.Token{AccessToken: "at", RefreshToken: "rt-SECRET"}); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			before := tree(t, filepath.Dir(path))
			_, err := s.Load(ctx)
			if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Errorf("Load() error = %v, want one that names the fix: chmod 600 %s", err, path)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error holds the token: %v", err)
			}
			if err := s.Save(ctx, &oauth2.Token{RefreshToken: "rt-2"}); err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Errorf("Save() error = %v, want one that names the fix: chmod 600 %s", err, path)
			}
			if diff := cmp.Diff(before, tree(t, filepath.Dir(path))); diff != "" {
				t.Errorf("Save() changed the files (-before +after):\n%s", diff)
			}
		})
	}
}

// giveAway makes the file or link at path another user's. It skips the
// test unless it runs as root, the only user that can give a file away.
func giveAway(t *testing.T, path string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root, to give a file to another user")
	}
	const nobody = 65534
	if err := os.Lchown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}

// TestRefusesOtherUsersFile: a file with mode 0600 that another user owns
// is refused by Load and Save: it could hold that user's token, or be
// replaced by them.
func TestRefusesOtherUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.json")
	s := New(path)
	if err := s.Save(ctx, &oauth2.Token{AccessToken: "at", RefreshToken: "rt-SECRET"}); err != nil {
		t.Fatal(err)
	}
	giveAway(t, path)
	before := tree(t, filepath.Dir(path))
	if tok, err := s.Load(ctx); err == nil || !strings.Contains(err.Error(), "owned by another user") {
		t.Errorf("Load() = %v, %v; want an error: owned by another user", tok, err)
	}
	if err := s.Save(ctx, &oauth2.Token{RefreshToken: "rt-2"}); err == nil || !strings.Contains(err.Error(), "owned by another user") {
		t.Errorf("Save() error = %v, want owned by another user", err)
	}
	if diff := cmp.Diff(before, tree(t, filepath.Dir(path))); diff != "" {
		t.Errorf("Save() changed the files (-before +after):\n%s", diff)
	}
}

// tree describes the files under dir, without following links: each one's
// type, and a link's destination or a regular file's content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		desc := d.Type().String()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			dest, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + dest
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		}
		files[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// symlink makes a symbolic link at dir/name to dest, and returns its path.
func symlink(t *testing.T, dest, dir, name string) string {
	t.Helper()
	link := filepath.Join(dir, name)
	if err := os.Symlink(dest, link); err != nil {
		t.Skip("cannot make symbolic links:", err)
	}
	return link
}

// saveFile saves a token with refresh token rt to the file at path.
func saveFile(t *testing.T, path, rt string) {
	t.Helper()
	if err := New(path).Save(ctx, &oauth2.Token{AccessToken: "at", RefreshToken: rt}); err != nil {
		t.Fatal(err)
	}
}

// TestSymlinkWritesThrough: a Store whose path is a symbolic link loads the
// file the link points to, and Save replaces that file and keeps the link,
// so that the file never holds a retired refresh token.
func TestSymlinkWritesThrough(t *testing.T) {
	tests := []struct {
		name string
		// layout makes the files in dir, and returns the Store's path and
		// the file it names.
		layout func(t *testing.T, dir string) (path, target string)
	}{
		{name: "relative link", layout: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "vault", "token.json")
			saveFile(t, target, "rt-1")
			return symlink(t, filepath.Join("vault", "token.json"), dir, "token.json"), target
		}},
		{name: "absolute link to another directory", layout: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(t.TempDir(), "token.json")
			saveFile(t, target, "rt-1")
			return symlink(t, target, dir, "token.json"), target
		}},
		{name: "link to a link", layout: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "vault", "token.json")
			saveFile(t, target, "rt-1")
			symlink(t, filepath.Join("vault", "token.json"), dir, "middle.json")
			return symlink(t, "middle.json", dir, "token.json"), target
		}},
		{name: "Kubernetes volume: link through a linked directory", layout: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "..2026_11_25", "token.json")
			saveFile(t, target, "rt-1")
			symlink(t, "..2026_11_25", dir, "..data")
			return symlink(t, filepath.Join("..data", "token.json"), dir, "token.json"), target
		}},
		{name: "link of the owner of its directory", layout: func(t *testing.T, dir string) (string, string) {
			target := filepath.Join(dir, "token.json")
			saveFile(t, target, "rt-1")
			sub := filepath.Join(dir, "theirs")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			link := symlink(t, target, sub, "token.json")
			giveAway(t, sub)
			giveAway(t, link)
			return link, target
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, target := tt.layout(t, dir)
			s := New(path)
			tok, err := s.Load(ctx)
			if err != nil || tok == nil || tok.RefreshToken != "rt-1" {
				t.Fatalf("Load() = %v, %v; want the target's token rt-1", tok, err)
			}
			if err := s.Save(ctx, &oauth2.Token{AccessToken: "at", RefreshToken: "rt-2"}); err != nil {
				t.Fatalf("Save() error = %v", err)
			}
			if fi, err := os.Lstat(path); err != nil {
				t.Error(err)
			} else if fi.Mode().Type() != fs.ModeSymlink {
				t.Errorf("after Save, the path has mode %v; want the link, kept", fi.Mode())
			}
			if tok, err := New(target).Load(ctx); err != nil || tok == nil || tok.RefreshToken != "rt-2" {
				t.Errorf("target holds %v, %v; want the new token rt-2", tok, err)
			}
			if tok, err := s.Load(ctx); err != nil || tok == nil || tok.RefreshToken != "rt-2" {
				t.Errorf("Load() after Save = %v, %v; want rt-2", tok, err)
			}
			for _, d := range []string{dir, filepath.Dir(target)} {
				for name := range tree(t, d) {
					if strings.Contains(name, ".tmp-") {
						t.Errorf("temporary file left: %s", filepath.Join(d, name))
					}
				}
			}
		})
	}
}

// TestRefusedPaths: Load and Save refuse a path that does not lead to a
// regular file of the user's, and Save leaves the files as they were: it
// does not replace a link, nor create a file at the end of one.
func TestRefusedPaths(t *testing.T) {
	tests := []struct {
		name    string
		layout  func(t *testing.T, dir string) (path string)
		wantErr string
		reason  string
	}{
		{name: "directory", wantErr: "not a regular file", layout: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "token.json")
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{name: "link to a directory", wantErr: "not a regular file", layout: func(t *testing.T, dir string) string {
			return symlink(t, ".", dir, "token.json")
		}},
		{name: "link to a FIFO", wantErr: "not a regular file", reason: "opening a FIFO would block", layout: func(t *testing.T, dir string) string {
			fifo := filepath.Join(dir, "fifo")
			if err := exec.Command("mkfifo", "-m", "600", fifo).Run(); err != nil {
				t.Skip("no mkfifo:", err)
			}
			return symlink(t, "fifo", dir, "token.json")
		}},
		{name: "link to a device", wantErr: "not a regular file", layout: func(t *testing.T, dir string) string {
			return symlink(t, os.DevNull, dir, "token.json")
		}},
		{name: "dangling link", wantErr: "does not exist", reason: "Save does not create the file at the end of a link", layout: func(t *testing.T, dir string) string {
			return symlink(t, filepath.Join("vault", "token.json"), dir, "token.json")
		}},
		{name: "loop of links", wantErr: "too many links", layout: func(t *testing.T, dir string) string {
			symlink(t, "b.json", dir, "a.json")
			return symlink(t, "a.json", dir, "b.json")
		}},
		{name: "link to an open file", wantErr: "chmod 600", layout: func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "vault", "token.json")
			saveFile(t, target, "rt-1")
			if err := os.Chmod(target, 0o644); err != nil {
				t.Fatal(err)
			}
			return symlink(t, filepath.Join("vault", "token.json"), dir, "token.json")
		}},
		{name: "link to another user's file", wantErr: "owned by another user", layout: func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "vault", "token.json")
			saveFile(t, target, "rt-1")
			giveAway(t, target)
			return symlink(t, filepath.Join("vault", "token.json"), dir, "token.json")
		}},
		{name: "another user's link", wantErr: "owned by another user", reason: "a link planted in a shared directory must not redirect a Save onto another of the user's files", layout: func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "vault", "token.json")
			saveFile(t, target, "rt-1")
			link := symlink(t, filepath.Join("vault", "token.json"), dir, "token.json")
			giveAway(t, link)
			return link
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := New(tt.layout(t, dir))
			before := tree(t, dir)
			if tok, err := s.Load(ctx); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load() = %v, %v; want an error: %s", tok, err, tt.wantErr)
			}
			if err := s.Save(ctx, &oauth2.Token{AccessToken: "at", RefreshToken: "rt-2"}); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Save() error = %v, want %s", err, tt.wantErr)
			}
			if diff := cmp.Diff(before, tree(t, dir)); diff != "" {
				t.Errorf("Save() changed the files (-before +after):\n%s", diff)
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

func TestConformance(t *testing.T) {
	refreshtokentest.TestStore(t, func(t *testing.T) refreshtokentest.Store {
		return New(filepath.Join(t.TempDir(), "token.json"))
	})
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

// TestSavesOnlyWhatLoads: a token as large as a source can be given (a
// 1 MiB token endpoint answer), written with JSON's six-byte escapes,
// saves and loads; one that would make a file Load refuses is refused by
// Save, and the stored token stays as it was, rather than being replaced
// by a file that no later start could read.
func TestSavesOnlyWhatLoads(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "token.json"))
	// '<' is escaped as \u003c: 1 MiB of it is a 6 MiB file.
	escaped := &oauth2.Token{AccessToken: strings.Repeat("<", 1<<20), RefreshToken: "rt-1"}
	if err := s.Save(ctx, escaped); err != nil {
		t.Fatalf("Save of a 1 MiB token that escapes to 6 MiB = %v", err)
	}
	if got, err := s.Load(ctx); err != nil || got.AccessToken != escaped.AccessToken {
		t.Fatalf("Load after Save of a 1 MiB escaped token = %v, %v; want it", got != nil, err)
	}
	huge := &oauth2.Token{AccessToken: strings.Repeat("<", 2<<20), RefreshToken: "rt-2"}
	if err := s.Save(ctx, huge); err == nil {
		t.Fatal("Save of a token whose file Load would refuse = nil error")
	}
	if got, err := s.Load(ctx); err != nil || got.RefreshToken != "rt-1" {
		t.Errorf("Load after a refused Save = %v, %v; want the token saved before", got, err)
	}
}
