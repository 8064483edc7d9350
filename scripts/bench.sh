#!/usr/bin/env bash
# `make bench`: builds what the benchmarks run, then runs the harness (mongo-pool-bench), which
# writes target/bench/report.json and target/bench/report.md and prints the table.
#
# Binaries: atlas-sim, lambda-sim, bootstrap, direct-function and the harness in release; the
# mongo-pool measured is the x86_64 musl build of the distribution profile when the Makefile
# built it (BENCH_MONGO_POOL, the default), else the release build. They are linked into
# $TARGET/bench/bin, which the harness reads through MONGO_POOL_BIN_DIR.
# Arguments are passed to the harness (`--quick` for a smoke run, `--out DIR`).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO="${CARGO:-cargo}"
TARGET="${CARGO_TARGET_DIR:-target}"
started=$(date +%s)

"$CARGO" build --release --locked --bins \
    -p mongo-pool-testkit -p mongo-pool -p sample-function -p mongo-pool-bench

bin="$TARGET/bench/bin"
mkdir -p "$bin"
for name in atlas-sim lambda-sim bootstrap direct-function; do
    ln -sfn "$(realpath "$TARGET/release/$name")" "$bin/$name"
done
pool="${BENCH_MONGO_POOL:-$TARGET/x86_64-unknown-linux-musl/dist/mongo-pool}"
if [ ! -x "$pool" ]; then
    echo "bench.sh: no $pool; measuring the release build of mongo-pool" >&2
    pool="$TARGET/release/mongo-pool"
fi
ln -sfn "$(realpath "$pool")" "$bin/mongo-pool"

status=0
MONGO_POOL_BIN_DIR="$bin" "$TARGET/release/mongo-pool-bench" "$@" || status=$?
echo "bench.sh: $(( $(date +%s) - started )) s (build + run)" >&2
exit "$status"
