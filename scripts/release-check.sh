#!/usr/bin/env bash
# The sample function as a release binary: it builds, and under lambda-sim without the layer
# it answers `ping` with the clear "is the mongo-pool layer attached?" error instead of crashing.
#
# Usage: release-check.sh [debug|release] (default debug). `make test` checks the debug binary
# its Rust suite has just built, so the test run compiles no second, release-profile dependency
# graph; `make layer-check` checks the release build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

profile="${1:-debug}"
target="${CARGO_TARGET_DIR:-target}"
case "$profile" in
  release) cargo build --release -p sample-function --bin bootstrap ;;
  # `cargo test --workspace` builds it; build it only when it is missing (a plain `cargo build`
  # resolves other features than the test build and would compile the graph again).
  debug) [ -x "$target/debug/bootstrap" ] || cargo build -p sample-function --bin bootstrap ;;
  *) echo "usage: $0 [debug|release]" >&2; exit 2 ;;
esac
ls -l "$target/$profile/bootstrap"
work=$(mktemp -d /tmp/mongo-pool-release-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$target/debug/lambda-sim" --function "$target/$profile/bootstrap" --event '{"action":"ping"}' \
  --env "MONGO_POOL_SOCKET=$work/no-layer.sock" >"$work/out" 2>"$work/err" ||
  { cat "$work/err"; echo "lambda-sim failed: $(cat "$work/out")"; exit 1; }
python3 - "$work/out" "$profile" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
invoke = next(l for l in lines if l["phase"] == "invoke")
response = invoke["response"]
assert invoke["status"] == "ok", invoke
assert response["ok"] is False, response
assert "is the mongo-pool layer attached" in response["error"], response
print(f"{sys.argv[2]} bootstrap under lambda-sim, no layer:", json.dumps(response))
PY
