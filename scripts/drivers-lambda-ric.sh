#!/usr/bin/env bash
# Installs tests/drivers/lambda-ric's packages (aws-lambda-ric, AWS's runtime interface client for
# Node, and the mongodb driver) for tests/drivers/python/test_lambda_ric.py. Called by
# `make drivers-lambda-ric` (a prerequisite of `make test`).
#
# aws-lambda-ric compiles curl and aws-lambda-cpp, then a node-gyp addon, at install: minutes on
# a 2-core machine. So the install is kept outside the work tree, in a cache directory named
# after package-lock.json's hash (under $XDG_CACHE_HOME or ~/.cache, else target/), and
# node_modules links to it: a fresh clone on the same machine reuses it. The build needs cmake
# (installed with apt-get when missing) and node's own headers (node-gyp would otherwise download
# them; nodedir points it at the installed ones). It never fails the build: when the install
# fails it says so, and the suite skips with the reason (counted as skipped, never as passed).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/tests/drivers/lambda-ric"
addon=node_modules/aws-lambda-ric/rapid-client.node

if [ -f "$dir/$addon" ] && [ -f "$dir/node_modules/.installed" ] &&
   [ "$dir/node_modules/.installed" -nt "$dir/package-lock.json" ]; then
  exit 0
fi

if ! command -v cmake >/dev/null && ! command -v cmake3 >/dev/null; then
  if command -v apt-get >/dev/null; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    echo "drivers-lambda-ric: installing cmake (aws-lambda-ric's native build) with apt-get (apt-get update first)"
    { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        cmake autoconf automake libtool >/dev/null; } ||
      echo "drivers-lambda-ric: apt-get could not install cmake"
  fi
fi

hash=$(sha256sum "$dir/package-lock.json" | cut -c1-16)
if [ -n "${XDG_CACHE_HOME:-}" ] || [ -n "${HOME:-}" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/mongo-pool/lambda-ric-$hash"
else
  cache="$root/target/lambda-ric-$hash"
fi

if [ ! -f "$cache/$addon" ] || [ ! -f "$cache/node_modules/.installed" ]; then
  echo "drivers-lambda-ric: npm ci in $cache (aws-lambda-ric builds curl and aws-lambda-cpp: minutes)"
  rm -rf "$cache" && mkdir -p "$cache" && cp "$dir/package.json" "$dir/package-lock.json" "$cache/"
  node_prefix=$(dirname "$(dirname "$(command -v node)")")
  nodedir=()
  [ -f "$node_prefix/include/node/node_api.h" ] && nodedir=(--nodedir="$node_prefix")
  start=$SECONDS
  if (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error "${nodedir[@]}") > "$cache.log" 2>&1 &&
     [ -f "$cache/$addon" ]; then
    touch "$cache/node_modules/.installed"
    echo "drivers-lambda-ric: installed in $((SECONDS - start)) s"
  else
    echo "drivers-lambda-ric: npm ci failed (log: $cache.log); the aws-lambda-ric suite will be skipped:"
    tail -n 20 "$cache.log"
    exit 0
  fi
fi

if [ -e "$dir/node_modules" ] && [ ! -L "$dir/node_modules" ]; then
  rm -rf "$dir/node_modules"
fi
ln -sfn "$cache/node_modules" "$dir/node_modules"
touch "$cache/node_modules/.installed"
version() { node -p "require('$cache/node_modules/$1/package.json').version"; }
echo "drivers-lambda-ric: aws-lambda-ric $(version aws-lambda-ric), mongodb $(version mongodb)"
