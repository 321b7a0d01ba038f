#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, and nothing when all are present.
# Usage: scripts/deps.sh [build|test|bench]   (each set includes the ones before it)
set -euo pipefail

want=${1:-test}
build_pkgs=(cmake make gcc pkgconf libmicrohttpd-dev libjansson-dev libsqlite3-dev libcurl4-openssl-dev libhiredis-dev libmd-dev zlib1g-dev libh2o-evloop-dev libssl-dev)
test_pkgs=(libcmocka-dev curl valgrind prometheus redis-server sqlite3 e2fsprogs clang libclang-rt-14-dev clang-format abigail-tools chromium nghttp2-client)
bench_pkgs=(wrk valgrind redis-server time)

pkgs=("${build_pkgs[@]}")
case "$want" in
    build) ;;
    test) pkgs+=("${test_pkgs[@]}") ;;
    bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
    *) echo "deps.sh: unknown set '$want' (build, test or bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    # dpkg-query is local and fast: a run with everything present costs a few milliseconds.
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: run as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are absent or older than a day, or an install fails.
lists=/var/lib/apt/lists
if [ -z "$(find "$lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n 1)" ]; then
    apt-get update -qq
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deps.sh: installed ${missing[*]}" >&2
