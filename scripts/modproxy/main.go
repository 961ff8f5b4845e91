// Command modproxy writes a module proxy on disk, in the layout of
// "go help goproxy", holding modules from source directories, so that the go
// command can fetch them (GOPROXY=file://DIR) as it would fetch a tagged
// release. The publish test, scripts/publish-test.sh, uses it.
//
// Usage:
//
//	modproxy -o PROXYDIR -time RFC3339 SRCDIR@VERSION...
//
// Each SRCDIR@VERSION publishes the module whose go.mod is in SRCDIR at
// VERSION: its go.mod as the .mod file, a .info file with the time, and a
// module zip made by golang.org/x/mod/zip, as the go command makes one from a
// tag (without the directories of nested modules, within Go's size and name
// rules). SRCDIR should hold committed files only, such as a git checkout of
// the commit to publish.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

func main() {
	out := flag.String("o", "", "the proxy `directory` to write (created if missing)")
	timeFlag := flag.String("time", "", "the versions' `time` in RFC 3339, such as the commit's")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: modproxy -o PROXYDIR -time RFC3339 SRCDIR@VERSION...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || *timeFlag == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	t, err := time.Parse(time.RFC3339, *timeFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "modproxy: -time:", err)
		os.Exit(2)
	}
	for _, arg := range flag.Args() {
		dir, version, ok := strings.Cut(arg, "@")
		if !ok {
			fmt.Fprintf(os.Stderr, "modproxy: %q is not SRCDIR@VERSION\n", arg)
			os.Exit(2)
		}
		m, err := publish(*out, dir, version, t)
		if err != nil {
			fmt.Fprintln(os.Stderr, "modproxy:", err)
			os.Exit(1)
		}
		fmt.Printf("published %s@%s from %s\n", m.Path, m.Version, dir)
	}
}

// publish writes the .mod, .info and .zip files of the module in dir at
// version under out, and adds version to the module's list file.
func publish(out, dir, version string, t time.Time) (module.Version, error) {
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return module.Version{}, err
	}
	m := module.Version{Path: modfile.ModulePath(gomod), Version: version}
	if m.Path == "" {
		return m, fmt.Errorf("%s: no module line in go.mod", dir)
	}
	// Check rejects a version that is not canonical semver, or whose major
	// version does not match the path's /vN suffix: the go command would
	// refuse to fetch it.
	if err := module.Check(m.Path, m.Version); err != nil {
		return m, err
	}
	escPath, err := module.EscapePath(m.Path)
	if err != nil {
		return m, err
	}
	escVersion, err := module.EscapeVersion(m.Version)
	if err != nil {
		return m, err
	}
	vdir := filepath.Join(out, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return m, err
	}
	base := filepath.Join(vdir, escVersion)

	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{m.Version, t.UTC()})
	if err != nil {
		return m, err
	}
	if err := os.WriteFile(base+".info", info, 0o644); err != nil {
		return m, err
	}
	if err := os.WriteFile(base+".mod", gomod, 0o644); err != nil {
		return m, err
	}
	if err := writeZip(base+".zip", m, dir); err != nil {
		return m, err
	}
	list, err := os.OpenFile(filepath.Join(vdir, "list"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return m, err
	}
	_, err = fmt.Fprintln(list, m.Version)
	return m, errors.Join(err, list.Close())
}

func writeZip(name string, m module.Version, dir string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := zip.CreateFromDir(f, m, dir); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
