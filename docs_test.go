package refreshtoken_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeQuickStart checks that the README's first Go block is
// examples/quickstart/main.go byte for byte, so that the program a user
// copies is the one that go vet and go build compile.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("examples", "quickstart", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(readme, []byte("\n```go\n"))
	if !ok {
		t.Fatal("README.md has no ```go block")
	}
	block, _, ok := bytes.Cut(rest, []byte("\n```\n"))
	if !ok {
		t.Fatal("README.md: the first ```go block does not end")
	}
	got := string(block) + "\n"
	if got != string(want) {
		t.Errorf("the first Go block of README.md is not examples/quickstart/main.go (copy the file into the README); %s", firstDiff(string(want), got))
	}
}

// firstDiff describes the first line where got differs from want.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  file:   %q\n  README: %q", i+1, wl, gl)
		}
	}
	return "they differ in line endings"
}

// mdLink matches the target of an inline link, [text](target), and of a
// reference definition, [name]: target.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)|(?m)^\[[^\]]+\]:\s+(\S+)`)

// TestDocLinks checks that every relative link of the README and of docs/
// leads to a file that exists and, with a #fragment, to one of its headings.
func TestDocLinks(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join("docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "README.md")
	checked := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(withoutCode(string(b)), -1) {
			target := m[1] + m[2]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, frag, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s: link %s: %v", page, target, err)
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(file, ".md") {
				t.Errorf("%s: link %s: a fragment in a file that is not Markdown", page, target)
				continue
			}
			content, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(content))[frag] {
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", page, target, file, frag)
			}
		}
	}
	if checked == 0 {
		t.Error("no relative link found: the link pattern is broken")
	}
}

// withoutCode blanks fenced code blocks, whose brackets are not links.
func withoutCode(md string) string {
	lines := strings.Split(md, "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			in = !in
			lines[i] = ""
		} else if in {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// anchors returns the anchors GitHub gives the headings of md: lower case,
// spaces to hyphens, other punctuation dropped, and -1, -2 after repeats.
func anchors(md string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range strings.Split(withoutCode(md), "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var slug strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				slug.WriteRune(r)
			}
		}
		a := slug.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

func TestAnchors(t *testing.T) {
	md := "# Title\n## Recovering from 401: `Transport` and `NewClient`\n```\n# not a heading\n```\n## Title\n## Why 2 minutes?\n"
	got := anchors(md)
	for _, want := range []string{"title", "recovering-from-401-transport-and-newclient", "title-1", "why-2-minutes"} {
		if !got[want] {
			t.Errorf("anchors() has no %q; got %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("anchors() took a line in a code block for a heading")
	}
}
