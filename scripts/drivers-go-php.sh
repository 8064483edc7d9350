#!/usr/bin/env bash
# Installs the Debian packages the Go and PHP driver suites use (tests/drivers/python/
# test_go_driver.py, test_php_driver.py) when they are missing, then prints their versions.
# Called by `make drivers-go-php` (a prerequisite of `make test`). It never fails the build: when
# the packages cannot be installed it says so, and those suites skip with the reason (counted as
# skipped in the summary, never as passed).
set -uo pipefail

packages=(golang-go golang-mongodb-mongo-driver-dev php-cli php-mongodb)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
else
  echo "drivers-go-php: not a Debian system (no dpkg-query): the Go and PHP driver suites will be skipped"
  exit 0
fi

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  echo "drivers-go-php: installing ${missing[*]} with apt-get (apt-get update first)"
  if ! { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
           "${missing[@]}" >/dev/null; }; then
    echo "drivers-go-php: apt-get could not install ${missing[*]}: the suites that need them will be skipped"
  fi
fi

for p in "${packages[@]}"; do
  if installed "$p"; then
    echo "drivers-go-php: $p $(dpkg-query -W -f='${Version}' "$p")"
  else
    echo "drivers-go-php: $p not installed"
  fi
done
