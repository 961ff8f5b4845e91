package refreshtoken

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// What the source shows of itself, and how secrets are kept out of what it
// shows: its String and Format, and the redaction of what a server sends.

// String describes the source for logs: the token URL and client ID of a
// source made by New, the inner source's type for Cache. It holds no
// secret.
func (s *TokenSource) String() string {
	if s.grant != nil {
		// Without query and user info, where a careless URL could hold a
		// secret.
		u, err := url.Parse(s.grant.tokenURL)
		where := "(unparsable)"
		if err == nil {
			where = u.Scheme + "://" + u.Host + u.Path
		}
		return fmt.Sprintf("refreshtoken.TokenSource{token URL %q, client ID %q}", where, s.grant.clientID)
	}
	return fmt.Sprintf("refreshtoken.TokenSource{cache of %T}", s.src)
}

// GoString is String, so that %#v prints no secret either.
func (s *TokenSource) GoString() string { return s.String() }

// Format prints String whatever the verb: fmt prints the fields of a struct
// for verbs such as %d or %x, and those hold the refresh token and the
// client secret.
func (s *TokenSource) Format(f fmt.State, _ rune) {
	if s == nil {
		io.WriteString(f, "<nil>")
		return
	}
	io.WriteString(f, s.String())
}

const redacted = "[redacted]"

// maxShown bounds what an error keeps of a string a server sent, so that
// a hostile server cannot make redacting take long: it takes time in
// proportion to the length of the string times that of the secrets.
const maxShown = 16 << 10

// redact replaces every span of s that decodes to a non-empty secret with
// "[redacted]". Every encoding a server may echo a secret in is seen
// through, mixed within one span and up to maxDepth layers deep: percent
// escapes (either case), + for a space, JSON escapes (\/, \uXXXX with
// surrogate pairs, ...) and HTML character references. Overlapping spans
// are redacted as one.
func redact(s string, secrets ...string) string {
	r, _ := redactPrefix(s, len(s), secrets)
	return r
}

// redactShown is redact for a string a server sent, cut to about maxShown
// bytes ("..." marks the cut). If the result printed with %q or %+q (as
// x/oauth2's RetrieveError prints its fields) would show a secret, which
// the escapes of that form can make up (\" or \u00e9 from a secret with a
// backslash), all of s is redacted.
func redactShown(s string, secrets ...string) string {
	s, cut := redactPrefix(s, maxShown, secrets)
	if cut {
		s += "..."
	}
	for _, q := range []string{strconv.Quote(s), strconv.QuoteToASCII(s)} {
		for _, piece := range strings.Split(q, redacted) {
			for _, secret := range secrets {
				if secret != "" && strings.Contains(piece, secret) {
					return redacted
				}
			}
		}
	}
	return s
}

// redactPrefix is redact of s cut after limit bytes, or a little more: a
// secret that starts before limit is read to its end, and redacted whole.
// cut reports whether text was left out.
func redactPrefix(s string, limit int, secrets []string) (r string, cut bool) {
	sc := newScan(s)
	var progs []*progress
	var first [256]bool // the first bytes of the secrets
	margin := 0         // the longest encoding of a secret is shorter
	for _, secret := range secrets {
		if secret != "" {
			progs = append(progs, &progress{secret: secret, slots: make([]*states, len(sc.lit))})
			first[secret[0]] = true
			margin = max(margin, len(secret)*readWindow)
		}
	}
	if limit >= len(s) {
		limit = len(s)
	} else {
		for limit > 0 && !utf8.RuneStart(s[limit]) {
			limit--
		}
	}
	var spans [][2]int
	var units []unit
	for p := 0; p < len(s) && p < limit+margin; p++ {
		starts := p < limit
		if c := s[p]; (!starts || !first[c] && c != '%' && c != '\\' && c != '+' && c != '&') && !pending(progs, p) {
			continue // no secret starts here, and none is being read
		}
		units = sc.read(p, maxDepth, units[:0])
		for _, pr := range progs {
			spans = pr.step(p, units, starts, spans)
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	copied := 0 // s[:copied] is written to b, or redacted
	for i := 0; i < len(spans); {
		start, end := spans[i][0], spans[i][1]
		for i++; i < len(spans) && spans[i][0] <= end; i++ {
			end = max(end, spans[i][1])
		}
		b.WriteString(s[copied:start])
		b.WriteString(redacted)
		copied = end
	}
	if copied < limit {
		b.WriteString(s[copied:limit])
		copied = limit
	}
	if len(spans) == 0 && copied == len(s) {
		return s, false
	}
	return b.String(), copied < len(s)
}

// progress is how far one secret has been read. slots[q%len(slots)] holds the
// states at position q: for each j in js, secret[:j] is the reading of
// s[start[j]:q], with the earliest such start.
type progress struct {
	secret string
	slots  []*states
}

// states are the partial readings of a secret that end at p.
type states struct {
	p     int
	js    []int
	start []int // by j; valid where seen[j] == p+1
	seen  []int
}

// step reads the units at p, advancing the states there and, if starts,
// the start of the secret at p, and appends to spans each complete reading.
func (pr *progress) step(p int, units []unit, starts bool, spans [][2]int) [][2]int {
	if starts {
		spans = pr.advance(p, 0, p, units, spans)
	}
	if st := pr.slots[p%len(pr.slots)]; st != nil && st.p == p {
		for _, j := range st.js {
			spans = pr.advance(p, j, st.start[j], units, spans)
		}
		st.js = st.js[:0]
	}
	return spans
}

// advance moves the state j at p, whose reading started at start, over
// each unit that the secret continues with.
func (pr *progress) advance(p, j, start int, units []unit, spans [][2]int) [][2]int {
	rest := pr.secret[j:]
	for _, u := range units {
		if u.n > len(rest) || rest[:u.n] != string(u.b[:u.n]) || u.end-p >= len(pr.slots) {
			continue
		}
		k := j + u.n
		if k == len(pr.secret) {
			spans = append(spans, [2]int{start, u.end})
			continue
		}
		st := pr.slots[u.end%len(pr.slots)]
		if st == nil {
			st = &states{start: make([]int, len(pr.secret)), seen: make([]int, len(pr.secret))}
			pr.slots[u.end%len(pr.slots)] = st
		}
		if st.p != u.end {
			st.p, st.js = u.end, st.js[:0]
		}
		switch {
		case st.seen[k] != u.end+1:
			st.seen[k], st.start[k] = u.end+1, start
			st.js = append(st.js, k)
		case start < st.start[k]:
			st.start[k] = start
		}
	}
	return spans
}

// pending reports whether some secret has been partly read up to p.
func pending(progs []*progress, p int) bool {
	for _, pr := range progs {
		if st := pr.slots[p%len(pr.slots)]; st != nil && st.p == p && len(st.js) > 0 {
			return true
		}
	}
	return false
}

// redactURL returns err, a *url.Error from parsing or fetching the token
// URL, with the URL it quotes redacted: a careless configuration may have
// put the client secret in it. Other errors are returned as they are.
func redactURL(err error, secrets ...string) error {
	if ue, ok := err.(*url.Error); ok {
		return &url.Error{Op: ue.Op, URL: redactShown(ue.URL, secrets...), Err: ue.Err}
	}
	return err
}

// sanitize returns resp for a RetrieveError, without the request that
// carried the credentials (in its body and Basic header): only its method
// and URL are kept. Its Status is the code and Go's text for it: the
// reason phrase is the server's to choose, and may echo a secret. Its
// header and trailer are redacted: fmt prints them when the RetrieveError
// is printed with a verb other than %v or %s.
func sanitize(resp *http.Response, secrets ...string) *http.Response {
	r := *resp
	r.Status = statusLine(resp.StatusCode)
	r.Header = redactHeader(resp.Header, secrets)
	r.Trailer = redactHeader(resp.Trailer, secrets)
	if resp.Request != nil {
		r.Request = &http.Request{Method: resp.Request.Method, URL: resp.Request.URL}
	}
	return &r
}

// redactHeader returns a copy of h with its names and values redacted. The
// fields are taken shortest first, up to maxShown bytes in all: the rest,
// long ones, are left out.
func redactHeader(h http.Header, secrets []string) http.Header {
	if h == nil {
		return nil
	}
	size := make(map[string]int, len(h))
	for k, vs := range h {
		size[k] = len(k)
		for _, v := range vs {
			size[k] += len(v)
		}
	}
	keys := slices.SortedFunc(maps.Keys(h), func(a, b string) int { return cmp.Or(size[a]-size[b], strings.Compare(a, b)) })
	r := make(http.Header, len(h))
	budget := maxShown
	for _, k := range keys {
		if budget -= size[k]; budget < 0 {
			break
		}
		rk := redactShown(k, secrets...)
		for _, v := range h[k] {
			r[rk] = append(r[rk], redactShown(v, secrets...))
		}
	}
	return r
}

// statusLine is code and Go's text for it, such as "503 Service
// Unavailable", or the code alone if Go knows no text for it.
func statusLine(code int) string {
	return strings.TrimSpace(strconv.Itoa(code) + " " + http.StatusText(code))
}
