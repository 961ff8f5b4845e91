#!/usr/bin/env bash
# Reproduces the README's Performance section: every benchmark against
# x/oauth2 in the same run, several runs, summarised with benchstat, and
# the stale-while-revalidate chart. Takes about 10 minutes on 2 cores.
#
#   scripts/bench.sh [outdir]     # default: bench/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench}
mkdir -p "$out"
export PATH="$PATH:$(go env GOPATH)/bin"
command -v benchstat >/dev/null || go install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

nproc > "$out/cores.txt"
# Timings: 10 runs each, one and two cores.
go test -run '^$' -bench '^(BenchmarkToken|BenchmarkRoundTrip|BenchmarkRequest|BenchmarkDPoP)$' -benchmem -count 10 -cpu 1,2 . | tee "$out/micro.txt"
# Scenarios: counts and latencies, 5 runs each.
go test -run '^$' -bench '^(BenchmarkRefreshStorm|BenchmarkStaleWhileRevalidate|BenchmarkOutage|BenchmarkLongRun)$' -benchtime 1x -count 5 . -args -swr.csv="$PWD/$out/swr.csv" | tee "$out/scenarios.txt"
# One tenant's rate limit: 10,000 users on simulated time, one run (about
# 6 minutes, most of it the runs without a limiter, which send 110,000
# requests each).
go test -run '^$' -bench '^BenchmarkTenantBudget$' -benchtime 1x -timeout 30m . | tee "$out/tenant.txt"

# Memory of idle per-user sources (10,000 of them), with the Redis store:
# needs redis-server on the PATH (the benchmark starts its own).
(cd redisstore && go test -run '^$' -bench '^BenchmarkIdleSources$' -count 5 .) | tee "$out/idle.txt"

benchstat -col /impl "$out/micro.txt" | tee "$out/micro-benchstat.txt"
benchstat -col /impl "$out/idle.txt" | tee "$out/idle-benchstat.txt"
benchstat -col /impl "$out/scenarios.txt" | tee "$out/scenarios-benchstat.txt"
go run ./scripts/swrchart -in "$out/swr.csv" -out docs/swr.svg
