#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time: wire/fuzz (the wire decoder, the command
# inspector) and extension/fuzz (the connection-string and configuration parser, the
# downstream handshake and routing, the whole request path with deep and oversized BSON).
#
#   scripts/fuzz.sh [SECONDS]     # SECONDS per target, default 60
#   FUZZ_TARGETS="uri route" scripts/fuzz.sh 10    # only some targets
#
# Installs cargo-fuzz when missing, uses a nightly toolchain when rustup has one (else stable
# with RUSTC_BOOTSTRAP=1). Each target reads the checked-in seeds (<crate>/fuzz/corpus/seeds/<target>)
# and grows a scratch corpus (<crate>/fuzz/corpus/<target>, git-ignored). Prints one line per
# target; exits non-zero when any target crashes (the input is kept in <crate>/fuzz/artifacts/).
# The fuzz crates build in their own target directories (<crate>/fuzz/target), whatever
# CARGO_TARGET_DIR says.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS]  (a positive whole number of seconds per target)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=(${FUZZ_TARGETS:-decode inspect uri route request})

# The fuzz crate that holds a target.
fuzz_dir_of() {
    case "$1" in
        decode | inspect) echo "$root/wire/fuzz" ;;
        uri | route | request) echo "$root/extension/fuzz" ;;
        *) return 1 ;;
    esac
}
for target in "${targets[@]}"; do
    if ! fuzz_dir_of "$target" >/dev/null; then
        echo "unknown fuzz target: $target (known: decode inspect uri route request)" >&2
        exit 2
    fi
done
unset CARGO_TARGET_DIR

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
    fuzz_dir="$(fuzz_dir_of "$target")"
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
