#!/usr/bin/env bash
# Packaging and checks for the Lambda layer; the Makefile's layer targets call it.
#
#   layer.sh stage BINARY DIR        DIR/extensions/mongo-pool (0755) + DIR/mongo-pool/{LICENSE,README.md}
#   layer.sh zip DIR ZIP             ZIP of DIR's contents, modes kept
#   layer.sh artifact DIR OUT        copies a staged layer into OUT (sam build's ARTIFACTS_DIR)
#   layer.sh function BINARY OUT     OUT/bootstrap (sam build's ARTIFACTS_DIR)
#   layer.sh check                   the checks of `make layer-check` (after `make layer`)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { echo "layer: $*" >&2; exit 1; }

need_file() { [ -f "$1" ] || die "$1 is missing: run \`make layer\` first"; }

stage() {
  local binary=$1 dir=$2
  need_file "$binary"
  rm -rf "$dir"
  mkdir -p "$dir/extensions" "$dir/mongo-pool"
  # Lambda starts every file in /opt/extensions/: only the binary goes there.
  install -m 0755 "$binary" "$dir/extensions/mongo-pool"
  install -m 0644 layer/LICENSE layer/README.md "$dir/mongo-pool/"
}

make_zip() {
  local dir=$1 zip=$2
  [ -d "$dir" ] || die "$dir is missing: run \`make layer\` first"
  rm -f "$zip"
  local abs
  abs=$(cd "$(dirname "$zip")" && pwd)/$(basename "$zip")
  (cd "$dir" && zip -q -X -r "$abs" extensions mongo-pool)
  echo "$zip: $(stat -c %s "$zip") bytes ($(stat -c %s "$dir/extensions/mongo-pool") bytes binary)"
}

artifact() {
  local dir=$1 out=$2
  [ -n "$out" ] || die "ARTIFACTS_DIR is not set (sam build sets it)"
  need_file "$dir/extensions/mongo-pool"
  mkdir -p "$out"
  cp -R "$dir/." "$out/"
}

function_artifact() {
  local binary=$1 out=$2
  [ -n "$out" ] || die "ARTIFACTS_DIR is not set (sam build sets it)"
  need_file "$binary"
  mkdir -p "$out"
  install -m 0755 "$binary" "$out/bootstrap"
}

# check_zip ZIP: exactly the expected entries, with their modes.
check_zip() {
  python3 - "$1" <<'PY'
import stat, sys, zipfile
expected = {
    "extensions/": None, "extensions/mongo-pool": 0o755,
    "mongo-pool/": None, "mongo-pool/LICENSE": 0o644, "mongo-pool/README.md": 0o644,
}
path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    found = {i.filename: i for i in z.infolist()}
    if set(found) != set(expected):
        sys.exit(f"{path}: entries {sorted(found)}, expected {sorted(expected)}")
    for name, mode in expected.items():
        unix = found[name].external_attr >> 16
        if mode is not None and (not stat.S_ISREG(unix) or stat.S_IMODE(unix) != mode):
            sys.exit(f"{path}: {name} has mode {oct(unix)}, expected a file with {oct(mode)}")
print(f"{path}: layout and modes ok")
PY
}

# check_static BINARY ARCH_WORD: `file` says statically linked for the architecture.
check_static() {
  local description
  description=$(file -b "$1")
  case "$description" in
    *"$2"*) ;;
    *) die "$1 is not built for $2: $description" ;;
  esac
  case "$description" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$1 is not statically linked: $description" ;;
  esac
  echo "$1: $2, static"
}

qemu_aarch64() {
  local q
  for q in qemu-aarch64-static qemu-aarch64; do
    if command -v "$q" >/dev/null; then echo "$q"; return; fi
  done
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    # Say so first: this changes the machine (stderr, so the caller's captured stdout stays the
    # command name).
    echo "layer.sh: no qemu-aarch64 here; installing Debian's qemu-user-static with apt-get" >&2
    apt-get install -y -qq qemu-user-static >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq qemu-user-static >/dev/null; }
  fi
  for q in qemu-aarch64-static qemu-aarch64; do
    if command -v "$q" >/dev/null; then echo "$q"; return; fi
  done
  die "qemu-user is not installed and could not be installed (apt-get install qemu-user-static)"
}

check() {
  local x86=target/x86_64-unknown-linux-musl/dist arm=target/aarch64-unknown-linux-musl/dist
  check_zip target/layer/mongo-pool-x86_64.zip
  check_zip target/layer/mongo-pool-arm64.zip
  check_static "$x86/mongo-pool" x86-64
  check_static "$arm/mongo-pool" aarch64
  check_static "$arm/bootstrap" aarch64

  echo "sam build (--build-in-source) ..."
  rm -rf .aws-sam
  SAM_CLI_TELEMETRY=0 PATH="$root/.venv/bin:$PATH" sam build --build-in-source >/dev/null
  for layer in MongoPoolLayerX8664 MongoPoolLayerArm64; do
    [ -x ".aws-sam/build/$layer/extensions/mongo-pool" ] ||
      die "sam build left no executable $layer/extensions/mongo-pool"
    [ -f ".aws-sam/build/$layer/mongo-pool/LICENSE" ] || die "sam build left no $layer/mongo-pool/LICENSE"
  done
  cmp -s .aws-sam/build/MongoPoolLayerArm64/extensions/mongo-pool "$arm/mongo-pool" ||
    die "sam build's arm64 layer is not the binary make layer built"
  [ -x .aws-sam/build/NotesFunction/bootstrap ] || die "sam build left no executable NotesFunction/bootstrap"
  echo "sam build: artifacts ok"

  local qemu
  qemu=$(qemu_aarch64)
  echo "arm64 under $qemu: $("$qemu" "$arm/mongo-pool" --version)"
  arm64_check_against_atlas_sim "$qemu" "$arm/mongo-pool"
  echo "layer-check: ok"
}

# The arm64 binary, under qemu, runs `mongo-pool check` against a local atlas-sim.
arm64_check_against_atlas_sim() {
  local qemu=$1 binary=$2 uri
  cargo build --quiet -p mongo-pool-testkit --bin atlas-sim
  work=$(mktemp -d /tmp/mongo-pool-layer-check.XXXXXX)
  target/debug/atlas-sim --principal AKIDLAYERCHECK:layer-check-secret >"$work/start" 2>"$work/atlas-sim.log" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 100); do [ -s "$work/start" ] && break; sleep 0.1; done
  uri=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uri"])' "$work/start") ||
    die "atlas-sim did not start: $(cat "$work/atlas-sim.log")"
  env -i PATH="$PATH" MONGO_POOL_URI="$uri" AWS_ACCESS_KEY_ID=AKIDLAYERCHECK \
    AWS_SECRET_ACCESS_KEY=layer-check-secret AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    "$qemu" "$binary" check || die "mongo-pool check (arm64, qemu) failed against atlas-sim"
}

cmd=${1:-}
shift || true
case "$cmd" in
  stage) stage "$@" ;;
  zip) make_zip "$@" ;;
  artifact) artifact "$@" ;;
  function) function_artifact "$@" ;;
  check) check ;;
  *) die "usage: layer.sh stage|zip|artifact|function|check ..." ;;
esac
