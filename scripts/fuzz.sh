#!/usr/bin/env bash
# Fuzzes mongo-pool-wire: runs each cargo-fuzz target in wire/fuzz for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]     # SECONDS per target, default 60
#   FUZZ_TARGETS=inspect scripts/fuzz.sh 10    # only some targets
#
# Installs cargo-fuzz when missing, uses a nightly toolchain when rustup has one (else stable
# with RUSTC_BOOTSTRAP=1). Each target reads the checked-in seeds (wire/fuzz/corpus/seeds/<target>)
# and grows a scratch corpus (wire/fuzz/corpus/<target>, git-ignored). Prints one line per
# target; exits non-zero when any target crashes (the input is kept in wire/fuzz/artifacts/).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS]  (a positive whole number of seconds per target)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/wire/fuzz"
targets=(${FUZZ_TARGETS:-decode inspect})

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

status=0
for target in "${targets[@]}"; do
    scratch="$fuzz_dir/corpus/$target"
    seeds="$fuzz_dir/corpus/seeds/$target"
    mkdir -p "$scratch"
    log="$logs/$target.log"
    start=$SECONDS
    if (cd "$fuzz_dir" && cargo "${toolchain[@]}" fuzz run "$target" "$scratch" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
        # libFuzzer ends with "Done <runs> runs in <seconds> second(s)".
        done_line="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)"
        execs="$(awk '{print $2}' <<<"$done_line")"
        fuzz_secs="$(awk '{print $5}' <<<"$done_line")"
        corpus="$(find "$scratch" -type f | wc -l)"
        echo "fuzz $target: ok, ${execs:-?} execs in ${fuzz_secs:-?}s, 0 crashes, corpus $corpus inputs ($((SECONDS - start))s with build)"
    else
        artifact="$(grep -o 'Test unit written to [^ ]*' "$log" | tail -1 | sed 's/Test unit written to //')"
        echo "fuzz $target: FAILED after $((SECONDS - start))s: ${artifact:-see log below}"
        tail -n 60 "$log" >&2
        status=1
    fi
done
exit "$status"
