#!/usr/bin/env bash
# The publish test: the modules of the current commit, served from a module
# proxy on disk at the version they are to be tagged with, are fetched, built
# and installed as a user does (go get, go install ...@version), in a module
# outside this repository and its go.work. It is the gate of a release
# (docs/releasing.md), and CI runs it.
#
# What is published is the commit (HEAD), not the working tree: uncommitted
# edits are left out, as a tag would leave them out. The version is the one
# redisstore/go.mod requires of the core (otel/go.mod and pgstore/go.mod must
# require the same); redisstore, pgstore and otel are published at the same
# version, as a release tags all four.
set -euo pipefail
start=$SECONDS
root=$(cd "$(dirname "$0")/.." && pwd)
core=github.com/tokenfresh/refreshtoken

tmp=$(mktemp -d "${TMPDIR:-/tmp}/publish-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "publish test: FAIL: $*" >&2
	exit 1
}

rev=$(git -C "$root" rev-parse --verify 'HEAD^{commit}')
if [ -n "$(git -C "$root" status --porcelain)" ]; then
	echo "publish test: uncommitted changes are not published, only $rev"
fi

# The committed tree, every file of it. git archive is not used: it obeys
# export-ignore and export-subst attributes, which the go command turns off
# when it makes a module zip from a tag; checkout-index into a private index
# does not know them.
src=$tmp/src
GIT_INDEX_FILE=$tmp/index git -C "$root" read-tree "$rev"
GIT_INDEX_FILE=$tmp/index git -C "$root" -c core.autocrlf=input -c core.eol=lf \
	checkout-index --all --prefix="$src/"

version=$(awk -v m="$core" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$src/redisstore/go.mod")
[ -n "$version" ] || fail "redisstore/go.mod does not require $core"
otelversion=$(awk -v m="$core" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$src/otel/go.mod")
[ "$otelversion" = "$version" ] || fail "otel/go.mod requires $core ${otelversion:-not at all}, redisstore/go.mod $version"
pgversion=$(awk -v m="$core" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' "$src/pgstore/go.mod")
[ "$pgversion" = "$version" ] || fail "pgstore/go.mod requires $core ${pgversion:-not at all}, redisstore/go.mod $version"
echo "publish test: $core, $core/redisstore, $core/pgstore and $core/otel at $version, from $rev"

proxy=$tmp/proxy
upstream=$(go env GOPROXY)
(cd "$root/scripts/modproxy" && GOWORK=off go run . -o "$proxy" \
	-time "$(git -C "$root" log -1 --format=%cI "$rev")" \
	"$src@$version" "$src/redisstore@$version" "$src/pgstore@$version" "$src/otel@$version")

# A fresh module cache, so that no earlier download of our modules (another
# commit at the same version) is used; third-party modules come from the
# usual proxy.
export GOWORK=off
export GOPATH=$tmp/gopath GOMODCACHE=$tmp/gopath/pkg/mod GOBIN=$tmp/bin
export GOPROXY="file://$proxy,$upstream"
# Our modules are not in the checksum database: not yet, and not at this
# commit's hash ever.
export GONOSUMDB=$core
# -modcacherw: the fresh cache's files are read-only otherwise, and the
# clean-up removes them. -trimpath: builds are then cached under module
# paths, not under the fresh cache's directory, so that a run reuses what the
# previous run compiled.
export GOFLAGS="${GOFLAGS:-} -modcacherw -trimpath"

user=$tmp/user
mkdir -p "$user"
cat > "$user/main.go" <<'GO'
// A user of the published modules: a source with a file store and the
// OpenTelemetry adapter, one with a Redis store and one with a PostgreSQL
// store (they do not connect).
package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	"github.com/tokenfresh/refreshtoken/filestore"
	refreshtokenotel "github.com/tokenfresh/refreshtoken/otel"
	"github.com/tokenfresh/refreshtoken/pgstore"
	"github.com/tokenfresh/refreshtoken/redisstore"
)

func main() {
	ctx := context.Background()
	conf := &oauth2.Config{
		ClientID: "client",
		Endpoint: oauth2.Endpoint{TokenURL: "https://tenant.example.com/oauth/token"},
	}
	tok := &oauth2.Token{RefreshToken: "refresh"}

	obs, err := refreshtokenotel.New(refreshtokenotel.WithTokenURL(conf.Endpoint.TokenURL))
	if err != nil {
		panic(err)
	}
	fileSource := refreshtoken.New(ctx, conf, tok,
		refreshtoken.WithStore(filestore.New("token.json")), refreshtoken.WithObserver(obs))
	defer fileSource.Close()

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer rdb.Close()
	redisSource := refreshtoken.New(ctx, conf, tok,
		refreshtoken.WithStore(redisstore.New(rdb, "refreshtoken:user")))
	defer redisSource.Close()

	pool, err := pgxpool.New(ctx, "postgres://app@127.0.0.1:1/app")
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	pgSource := refreshtoken.New(ctx, conf, tok,
		refreshtoken.WithStore(pgstore.New(pool, "user")))
	defer pgSource.Close()

	fmt.Println("ok")
}
GO
cd "$user"
out=$(go mod init example.com/user 2>&1) || fail "go mod init: $out"
go get "$core@$version" "$core/redisstore@$version" "$core/pgstore@$version" "$core/otel@$version" ||
	fail "go get $core@$version $core/redisstore@$version $core/pgstore@$version $core/otel@$version"
go mod tidy || fail "go mod tidy"
go vet ./... || fail "go vet"
go build -o "$tmp/user.bin" . || fail "go build"
[ "$("$tmp/user.bin")" = ok ] || fail "the user's program did not run"

# What a tag publishes: each module holds its LICENSE, and the core holds
# no nested module (redisstore/, pgstore/, otel/, interop/, scripts/modproxy/).
coredir=$GOMODCACHE/$core@$version
[ -f "$coredir/LICENSE" ] || fail "$core@$version has no LICENSE"
for m in redisstore pgstore otel; do
	cmp -s "$coredir/LICENSE" "$GOMODCACHE/$core/$m@$version/LICENSE" ||
		fail "$core/$m@$version has no LICENSE, or not the core's"
done
nested=$(cd "$coredir" && find . -mindepth 2 -name go.mod)
[ -z "$nested" ] || fail "$core@$version holds other modules: $nested"
# Nor a program built in the checkout and committed by mistake (go build
# ./cmd/refreshtoken in the root writes ./refreshtoken): a user would
# download it with every go get.
binaries=$(cd "$coredir" && find . -type f -exec sh -c 'for f; do
	case $(head -c 4 "$f" | od -An -tx1 | tr -d " \n") in
	7f454c46 | cffaedfe | cefaedfe | 4d5a*) echo "$f" ;;
	esac
done' sh {} +)
[ -z "$binaries" ] || fail "$core@$version holds executables: $binaries"

go install "$core/cmd/refreshtoken@$version" || fail "go install $core/cmd/refreshtoken@$version"
bin=$GOBIN/refreshtoken
go version -m "$bin" | grep -Eq "^[[:space:]]+mod[[:space:]]+$core[[:space:]]+$version[[:space:]]" ||
	fail "go version -m $bin does not give $core $version: $(go version -m "$bin")"
"$bin" help >/dev/null 2>&1 || fail "refreshtoken help exited $?"
out=$("$bin" version 2>&1) || fail "refreshtoken version exited $?"
case $out in
*"$version"*) ;;
*) fail "refreshtoken version says \"$out\", not $version" ;;
esac

echo "publish test: ok ($((SECONDS - start))s)"
