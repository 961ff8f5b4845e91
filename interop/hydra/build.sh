#!/usr/bin/env bash
# Builds Ory Hydra from the Go module proxy into a cache directory, for the
# interop tests, and prints the binary's path. Does nothing but print it
# when the binary is already there. No Hydra code is kept in this
# repository: the module that builds it is generated in a temporary
# directory and removed.
#
#   interop/hydra/build.sh    # builds once; prints the binary's path
#
# The tests find the binary at the same path ($XDG_CACHE_HOME, else
# ~/.cache), or at $HYDRA_BIN.
set -euo pipefail

version=v2.3.0
# Hydra's own go.mod replaces pop with Ory's fork; a module that depends on
# Hydra must repeat the replace, since replaces of dependencies do not apply.
pop=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b

dir="${XDG_CACHE_HOME:-$HOME/.cache}/refreshtoken-interop/hydra-$version"
bin="$dir/hydra"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
export GOWORK=off
go mod init refreshtoken-interop/hydra
go mod edit -replace "github.com/gobuffalo/pop/v6=$pop"
go get -tool "github.com/ory/hydra/v2@$version" >&2
# The tags are those of Hydra's own Makefile: sqlite compiles in its SQLite
# support (the tests use a file database), sqlite_omit_load_extension
# leaves out SQLite's loading of extensions, which nothing here uses.
CGO_ENABLED=1 go build -tags sqlite,sqlite_omit_load_extension -o "$bin.tmp" github.com/ory/hydra/v2 >&2
mv "$bin.tmp" "$bin"
echo "$bin"
