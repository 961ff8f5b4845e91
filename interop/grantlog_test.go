package interop

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// digest is a token as the tests keep it: its SHA-256, so that no failure
// message can show a token, and tokens can still be compared.
type digest [sha256.Size]byte

func digestOf(token string) digest {
	if token == "" {
		return digest{}
	}
	return sha256.Sum256([]byte(token))
}

// grant is one request to the token endpoint, as the server saw it.
type grant struct {
	at        time.Time // when it arrived
	grantType string
	sent      digest // the refresh token sent, for the refresh grant
	status    int
	errCode   string // the OAuth error code of an error answer
	issued    digest // the refresh token in the answer, zero if none
	expiresIn int64  // the answer's expires_in, 0 if none
}

// grantLog serves a token endpoint through next and records every request:
// it is how the tests count refreshes and see what the server saw. An
// answer is recorded before it is sent, so the record of a refresh is
// complete before the client can send the next one.
type grantLog struct {
	next http.Handler

	mu     sync.Mutex // guards grants
	grants []grant
}

func (l *grantLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := grant{at: time.Now()}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading the request", http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if form, err := url.ParseQuery(string(body)); err == nil {
		g.grantType = form.Get("grant_type")
		g.sent = digestOf(form.Get("refresh_token"))
	}

	rec := httptest.NewRecorder()
	l.next.ServeHTTP(rec, r)
	g.status = rec.Code
	var answer struct {
		Error        string          `json:"error"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &answer) == nil {
		g.errCode = answer.Error
		g.issued = digestOf(answer.RefreshToken)
		json.Unmarshal(answer.ExpiresIn, &g.expiresIn)
	}
	l.mu.Lock()
	l.grants = append(l.grants, g)
	l.mu.Unlock()

	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// refreshes returns the refresh grants recorded so far, oldest first.
func (l *grantLog) refreshes() []grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []grant
	for _, g := range l.grants {
		if g.grantType == "refresh_token" {
			out = append(out, g)
		}
	}
	return out
}

// total returns how many token requests of any grant were recorded.
func (l *grantLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.grants)
}
