package refreshtoken

import (
	"strings"
	"unicode/utf8"
)

// How text is read through its escapes: the readings of each position of a
// string, which redact matches secrets against.

// maxDepth is how many layers of escaping redact sees through: two for a
// secret percent-encoded in a URL that is itself percent-encoded, or put in
// JSON with \u0025 for its percent signs.
const maxDepth = 2

// readWindow exceeds the length of the longest reading of one character: a
// JSON surrogate pair whose every character is itself escaped, at most
// 2 * 6 * 11 bytes. Readings and states are kept for this many positions.
const readWindow = 256

// scan reads s from left to right, for redact: the readings of each
// position, memoized for the escapes of the layer above.
type scan struct {
	s    string
	lit  []unit                 // lit[p%len(lit)]: the reading at depth 0
	memo [maxDepth - 1][]readAt // memo[d-1][p%len(lit)]: the readings at p, at depth d
}

// newScan returns a scan of s. Its windows are no longer than s: in a
// short string, no two positions share a slot.
func newScan(s string) *scan {
	w := min(readWindow, len(s)+1)
	sc := &scan{s: s, lit: make([]unit, w)}
	for d := range sc.memo {
		sc.memo[d] = make([]readAt, w)
	}
	return sc
}

// readAt is a memoized reading: units are the readings at p, if set. buf
// holds them unless there are many.
type readAt struct {
	p     int
	set   bool
	units []unit
	buf   [3]unit
}

// at returns the readings of s at p at a depth below maxDepth.
func (sc *scan) at(p, depth int) []unit {
	if p >= len(sc.s) {
		return nil
	}
	w := len(sc.lit)
	if depth == 0 {
		sc.lit[p%w] = byteUnit(sc.s[p], p+1)
		return sc.lit[p%w : p%w+1]
	}
	m := &sc.memo[depth-1][p%w]
	if !m.set || m.p != p {
		m.units = sc.read(p, depth, m.buf[:0])
		m.p, m.set = p, true
	}
	return m.units
}

// read appends to out every reading of s at p as one unit, with up to depth
// layers of escaping: the byte itself, and what an escape starting there
// stands for. The characters of an escape may themselves be escaped, one
// layer less deep.
func (sc *scan) read(p, depth int, out []unit) []unit {
	s := sc.s
	out = append(out, byteUnit(s[p], p+1))
	if depth == 0 {
		return out
	}
	switch s[p] {
	case '+':
		out = append(out, byteUnit(' ', p+1))
	case '&':
		out = htmlRef(s, p, out)
	}
	for _, u := range sc.at(p, depth-1) {
		if u.n != 1 {
			continue
		}
		switch u.b[0] {
		case '%':
			for _, h := range sc.at(u.end, depth-1) {
				hi, ok := hexUnit(h)
				if !ok {
					continue
				}
				for _, l := range sc.at(h.end, depth-1) {
					if lo, ok := hexUnit(l); ok {
						out = append(out, byteUnit(hi<<4|lo, l.end))
					}
				}
			}
		case '\\':
			out = sc.jsonEscape(u.end, depth-1, out)
		}
	}
	return out
}

// jsonEscape appends the readings of a JSON escape whose backslash ends at
// p; its other characters are read at depth.
func (sc *scan) jsonEscape(p, depth int, out []unit) []unit {
	for _, u := range sc.at(p, depth) {
		if u.n != 1 {
			continue
		}
		if c, ok := jsonShort[u.b[0]]; ok {
			out = append(out, byteUnit(c, u.end))
			continue
		}
		if u.b[0] != 'u' {
			continue
		}
		var his [8]hex4
		for _, hi := range sc.hex4(u.end, depth, 0, 0, his[:0]) {
			if hi.v < 0xD800 || hi.v > 0xDBFF {
				out = append(out, runeUnit(hi.v, hi.end))
				continue
			}
			// A high surrogate: with a low one after it, the pair is one
			// rune; alone, it is U+FFFD, as encoding/json reads it.
			out = append(out, runeUnit(utf8.RuneError, hi.end))
			for _, b := range sc.at(hi.end, depth) {
				if b.n != 1 || b.b[0] != '\\' {
					continue
				}
				for _, u := range sc.at(b.end, depth) {
					if u.n != 1 || u.b[0] != 'u' {
						continue
					}
					var los [8]hex4
					for _, lo := range sc.hex4(u.end, depth, 0, 0, los[:0]) {
						if lo.v >= 0xDC00 && lo.v <= 0xDFFF {
							out = append(out, runeUnit(0x10000+(hi.v-0xD800)<<10+(lo.v-0xDC00), lo.end))
						}
					}
				}
			}
		}
	}
	return out
}

// jsonShort maps the letter of a two-character JSON escape to its byte.
var jsonShort = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// hex4 is a reading of four hex digits: their value, and where they end.
type hex4 struct {
	v   rune
	end int
}

// hex4 appends the readings of s at p as the last 4-k of four hex digits,
// the first k of which have the value v.
func (sc *scan) hex4(p, depth, k int, v rune, out []hex4) []hex4 {
	if k == 4 {
		return append(out, hex4{v, p})
	}
	for _, h := range sc.at(p, depth) {
		if d, ok := hexUnit(h); ok {
			out = sc.hex4(h.end, depth, k+1, v<<4|rune(d), out)
		}
	}
	return out
}

// unit is one reading of text: the bytes b[:n] that s[start:end] stands for.
type unit struct {
	b   [utf8.UTFMax]byte
	n   int
	end int
}

func byteUnit(c byte, end int) unit { return unit{b: [utf8.UTFMax]byte{c}, n: 1, end: end} }

func runeUnit(r rune, end int) unit {
	u := unit{end: end}
	u.n = utf8.EncodeRune(u.b[:], r) // a surrogate or an invalid rune is U+FFFD, as in encoding/json
	return u
}

// hexUnit returns the value of u if it is one hex digit.
func hexUnit(u unit) (byte, bool) {
	if u.n != 1 {
		return 0, false
	}
	return hexValue(u.b[0])
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// htmlEntities are the named character references that HTML escapers
// (html.EscapeString, html/template) write.
var htmlEntities = []struct {
	name string
	c    byte
}{{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}}

// htmlRef appends the readings of an HTML character reference at p: a named
// one, or &#NNN; or &#xHHH; with at most 7 digits (the semicolon may be left
// out, as browsers allow).
func htmlRef(s string, p int, out []unit) []unit {
	for _, e := range htmlEntities {
		if strings.HasPrefix(s[p:], e.name) {
			out = append(out, byteUnit(e.c, p+len(e.name)))
		}
	}
	if !strings.HasPrefix(s[p:], "&#") {
		return out
	}
	q, base := p+2, rune(10)
	if q < len(s) && (s[q] == 'x' || s[q] == 'X') {
		q, base = q+1, 16
	}
	var v rune
	digits := 0
	for ; q < len(s) && digits < 7; q, digits = q+1, digits+1 {
		d, ok := hexValue(s[q])
		if !ok || rune(d) >= base {
			break
		}
		v = v*base + rune(d)
	}
	if digits == 0 || v > utf8.MaxRune {
		return out
	}
	out = append(out, runeUnit(v, q))
	if q < len(s) && s[q] == ';' {
		out = append(out, runeUnit(v, q+1))
	}
	return out
}
