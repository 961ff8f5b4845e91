package refreshtoken_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tokenfresh/refreshtoken"
)

// secretScan is an Observer that writes every event down, printed with
// %+v and logged by SlogObserver (JSON, Debug), and passes it on to next.
type secretScan struct {
	next refreshtoken.Observer
	log  refreshtoken.Observer

	mu     sync.Mutex
	buf    bytes.Buffer // mu guards buf and n; log writes into buf
	events int
}

// scanSecrets returns an observer that fails t, when t ends, if an event
// or its log record holds one of the secrets (as secrets returns them
// then), as they are or in hex. next, if not nil, gets the events too.
func scanSecrets(t *testing.T, secrets func() []string, next refreshtoken.Observer) refreshtoken.Observer {
	s := &secretScan{next: next}
	s.log = refreshtoken.SlogObserver(slog.New(slog.NewJSONHandler(&s.buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range secretsIn(s.buf.String(), secrets()) {
			t.Errorf("secret in an event or its log record: %s", l)
		}
		t.Logf("secret scan: %d events", s.events)
	})
	return s
}

func (s *secretScan) Observe(e refreshtoken.Event) {
	s.mu.Lock()
	s.events++
	fmt.Fprintf(&s.buf, "%T %+v\n", e, e)
	s.log.Observe(e)
	s.mu.Unlock()
	if s.next != nil {
		s.next.Observe(e)
	}
}

// secretsIn returns the secrets found in text, as they are or in hex. As
// leaks does for a string, but quick for the long logs of the tests that
// refresh thousands of times: a secret lies within one run of the bytes
// secrets are made of, and only those runs are searched.
func secretsIn(text string, secrets []string) []string {
	forms := map[string]string{} // a secret, or its hex, to the secret
	lengths := map[int]bool{}
	var alphabet [256]bool
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		h := hex.EncodeToString([]byte(secret))
		for _, f := range []string{secret, h, strings.ToUpper(h)} {
			forms[f] = secret
			lengths[len(f)] = true
			for i := range len(f) {
				alphabet[f[i]] = true
			}
		}
	}
	var found []string
	for _, run := range strings.FieldsFunc(text, func(r rune) bool { return r >= 256 || !alphabet[r] }) {
		for n := range lengths {
			for i := 0; i+n <= len(run); i++ {
				if secret, ok := forms[run[i:i+n]]; ok {
					found = append(found, fmt.Sprintf("%.12s... in %.300s", secret, run))
				}
			}
		}
	}
	return found
}

// TestSecretsIn: the scan finds a secret anywhere in a run, or in hex,
// and nothing else.
func TestSecretsIn(t *testing.T) {
	secrets := []string{"rt-SECRET", "ab.c_d"}
	for _, tt := range []struct {
		text string
		want int
	}{
		{`{"msg":"x","err":"refresh rt-SECRET failed"}`, 1},
		{`xxrt-SECRETyy`, 1},
		{`"` + hex.EncodeToString([]byte("ab.c_d")) + `"`, 1},
		{strings.ToUpper(hex.EncodeToString([]byte("rt-SECRET"))), 1},
		{`rt-SECRE T ab.c_ rt-secret`, 0},
	} {
		if got := secretsIn(tt.text, secrets); len(got) != tt.want {
			t.Errorf("secretsIn(%q) = %q, want %d", tt.text, got, tt.want)
		}
	}
}
