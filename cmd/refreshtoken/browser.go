package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// answer is what the browser's redirect brought: a code or an error. The
// login sends the outcome of the code's exchange on done (buffered), for
// the page the browser is shown.
type answer struct {
	code string
	err  error
	done chan error
}

// callback is the listener that the authorization server redirects the
// browser to. The first redirect to /callback that carries this login's
// state is the answer, whatever else it holds. One without the state was
// not caused by this login (RFC 6749 §10.12: another page, another
// process, or a browser tab left from an earlier login can send a request
// there): its code is not exchanged, it is answered with a page saying
// so, and the login keeps waiting, so that such a request cannot end the
// sign-in in progress.
type callback struct {
	srv     *http.Server
	answers chan answer // buffered: holds the first answer
}

func newCallback(l net.Listener, state string) *callback {
	cb := &callback{answers: make(chan answer, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			page(w, http.StatusBadRequest, "This is not the answer to the sign-in in progress (it does not carry its state), so it was ignored. Open the URL that refreshtoken login printed.")
			return
		}
		ans := answer{code: q.Get("code"), done: make(chan error, 1)}
		switch {
		case q.Get("error") != "":
			ans.err = fmt.Errorf("the server refused the sign-in: %q", q.Get("error"))
			if d := q.Get("error_description"); d != "" {
				ans.err = fmt.Errorf("%w (%q)", ans.err, d)
			}
		case ans.code == "":
			ans.err = errors.New("the browser's redirect carries neither a code nor an error")
		}
		select {
		case cb.answers <- ans:
		default:
			page(w, http.StatusConflict, "This sign-in has already been answered. Return to the terminal.")
			return
		}
		var err error
		select {
		case err = <-ans.done:
		case <-r.Context().Done():
			return
		}
		if err != nil {
			page(w, http.StatusBadRequest, "Sign-in failed: "+err.Error()+". Return to the terminal.")
			return
		}
		page(w, http.StatusOK, "Signed in. You can close this window and return to the terminal.")
	})
	cb.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go cb.srv.Serve(l)
	return cb
}

// close stops the listener, letting a page being written finish.
func (cb *callback) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if cb.srv.Shutdown(ctx) != nil {
		cb.srv.Close()
	}
}

// page answers the browser with a short HTML page.
func page(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, "<!doctype html><title>refreshtoken login</title><p>"+html.EscapeString(msg)+"\n")
}

// openBrowser starts the system's URL opener on u, if there is one on
// PATH, and reports whether it started; it does not wait for it. A
// machine without one (a server, a container) is no error: the URL is
// printed.
func openBrowser(u string) bool {
	name, args := "xdg-open", []string{u}
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		name, args = "rundll32", []string{"url.dll,FileProtocolHandler", u}
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return false
	}
	cmd := exec.Command(path, args...)
	cmd.Env = browserEnv(os.Environ())
	if cmd.Start() != nil {
		return false
	}
	go cmd.Wait()
	return true
}

// browserEnv is env without the command's secrets: the browser, which
// may live on long after the login (and start other programs), has no use
// for the client secret or the state key.
func browserEnv(env []string) []string {
	return slices.DeleteFunc(env, func(kv string) bool {
		return strings.HasPrefix(kv, "REFRESHTOKEN_CLIENT_SECRET=") || strings.HasPrefix(kv, "REFRESHTOKEN_STATE_KEY=")
	})
}
