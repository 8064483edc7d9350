#!/usr/bin/env bash
# The sample function as a release binary: it builds, and under lambda-sim without the layer
# it answers `ping` with the clear "is the mongo-pool layer attached?" error instead of crashing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p sample-function --bin bootstrap
ls -l "$target/release/bootstrap"
work=$(mktemp -d /tmp/mongo-pool-release-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$target/debug/lambda-sim" --function "$target/release/bootstrap" --event '{"action":"ping"}' \
  --env "MONGO_POOL_SOCKET=$work/no-layer.sock" >"$work/out" 2>"$work/err" ||
  { cat "$work/err"; echo "lambda-sim failed: $(cat "$work/out")"; exit 1; }
python3 - "$work/out" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
invoke = next(l for l in lines if l["phase"] == "invoke")
response = invoke["response"]
assert invoke["status"] == "ok", invoke
assert response["ok"] is False, response
assert "is the mongo-pool layer attached" in response["error"], response
print("release bootstrap under lambda-sim, no layer:", json.dumps(response))
PY
