#!/usr/bin/env bash
# Runs every test suite of the project, each in turn, and prints a closing summary.
# Called by `make test` after it has installed what the suites need.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
logs=target/test-logs
mkdir -p "$logs"
py=.venv/bin/python

passed=0
failed=0
skipped=0
declare -a rows=()

# run_suite NAME COMMAND... : runs one suite, keeps its log, adds up its counts.
run_suite() {
  local name=$1; shift
  local log="$logs/$name.log"
  local start=$SECONDS
  echo "==> $name: $*"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local p f s
  read -r p f s < <(count_results "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1 # the suite failed without a per-test count (build error, crash): count it once
  elif [ "$rc" -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ "$s" -eq 0 ]; then
    p=1 # a check with no per-test count (cfn-lint, the demo) that passed counts once
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s)) # a suite whose packages are missing skips: never counted as passed
  rows+=("$(printf '%-28s %5d passed %4d failed %4d skipped  exit %-3d %4ds' "$name" "$p" "$f" "$s" "$rc" $((SECONDS - start)))")
}

# count_results LOG: prints "PASSED FAILED SKIPPED" summed over cargo test, pytest and node --test
# lines (cargo's "ignored" are not counted as skipped: they are opt-in tests, not missing packages).
count_results() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
p = f = s = 0
for m in re.finditer(r"^test result: \w+\. (\d+) passed; (\d+) failed", text, re.M):
    p += int(m.group(1)); f += int(m.group(2))
# pytest's result line, with or without the === borders (-q drops them).
for line in re.findall(r"^=*\s*((?:\d+ \w+(?:, )?)+) in [\d.]+s", text, re.M):
    for n, word in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", line):
        if word == "passed": p += int(n)
        elif word == "skipped": s += int(n)
        else: f += int(n)
for m in re.finditer(r"^# pass (\d+)$", text, re.M):
    p += int(m.group(1))
for m in re.finditer(r"^# fail (\d+)$", text, re.M):
    f += int(m.group(1))
for m in re.finditer(r"^# skip(?:ped)? (\d+)$", text, re.M):
    s += int(m.group(1))
print(p, f, s)
PY
}

# First: it also builds the binaries (mongo-pool, atlas-sim, lambda-sim, bootstrap) the later
# suites start.
run_suite rust cargo test --workspace --all-targets --no-fail-fast
run_suite rust-doc cargo test --workspace --doc
run_suite python-drivers "$py" -m pytest -q -p no:cacheprovider tests/drivers/python \
  --ignore=tests/drivers/python/test_go_driver.py --ignore=tests/drivers/python/test_php_driver.py \
  --ignore=tests/drivers/python/test_lambda_ric.py
# The Go driver and PHP's mongodb extension (Debian packages, `make drivers-go-php`): their own
# rows, with -rs so a skip prints its reason (a missing package).
run_suite go-driver "$py" -m pytest -q -rs -p no:cacheprovider tests/drivers/python/test_go_driver.py
run_suite php-driver "$py" -m pytest -q -rs -p no:cacheprovider tests/drivers/python/test_php_driver.py
# A Node.js handler under AWS's runtime interface client (`make drivers-lambda-ric`), lambda-sim
# and mongo-pool as its extension.
run_suite lambda-ric "$py" -m pytest -q -rs -p no:cacheprovider tests/drivers/python/test_lambda_ric.py
if [ -f tests/drivers/node/package.json ]; then
  run_suite node-drivers node --test --test-reporter=tap tests/drivers/node/*.test.mjs
fi
# The sample function answering without the layer (the debug build; `make layer-check` checks
# the release build).
run_suite sample-function-no-layer scripts/release-check.sh debug
# The SAM template: no errors and no warnings, outside and inside a VPC, with cfn-lint and SAM.
run_suite template scripts/template-check.sh
# `make demo` keeps working: it exits non-zero when an invocation fails or connections stay open.
run_suite demo python3 scripts/demo.py

echo
echo "==================== test summary ===================="
for row in "${rows[@]}"; do echo "  $row"; done
echo "======================================================"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
