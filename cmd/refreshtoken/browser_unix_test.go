//go:build unix

package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// TestBrowserGetsNoSecrets: the browser that login opens (xdg-open or open, and
// the browser it may start, which lives on) is not given the state key
// nor the client secret from the environment.
func TestBrowserGetsNoSecrets(t *testing.T) {
	c := newCLI(t, refreshtokentest.Config{})
	bin := filepath.Join(c.dir, "bin")
	if err := os.Mkdir(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	seen, fifo := filepath.Join(c.dir, "browser.env"), filepath.Join(c.dir, "browser.done")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nenv > '" + seen + "'\necho done > '" + fifo + "'\n"
	opener := "xdg-open"
	if runtime.GOOS == "darwin" {
		opener = "open"
	}
	if err := os.WriteFile(filepath.Join(bin, opener), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { // opening a FIFO to read waits for its writer
		_, err := os.ReadFile(fifo)
		done <- err
	}()
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	env := append(c.loginEnv(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "REFRESHTOKEN_STATE_KEY="+key)
	p := start(t, env, false, "login", "-state", c.state)
	browse(t, authorizeURL(t, p).String())
	if code := p.wait(); code != 0 {
		t.Fatalf("login exited %d; output:\n%s", code, p.out())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fake browser was not started")
	}
	b, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "REFRESHTOKEN_TOKEN_URL=") {
		t.Fatalf("the fake browser's environment lacks the command's settings: %d bytes", len(b))
	}
	for name, s := range map[string]string{"the state key": key, "the client secret": "test-secret"} {
		if strings.Contains(string(b), s) {
			t.Errorf("the browser's environment holds %s", name)
		}
	}
}
