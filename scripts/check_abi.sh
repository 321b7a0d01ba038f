#!/usr/bin/env bash
# Compares the built libraries' ABI with the committed baseline in abi/ (libabigail). A removed
# or changed function or variable, or a changed type under one (a struct's size or layout), fails;
# an addition alone passes with a note. After a
# deliberate change (a new minor version while the major is 0, see include/o11y/common.h),
# regenerate the baseline: scripts/check_abi.sh --update BUILD_DIR
# Usage: scripts/check_abi.sh [--update] BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
if [ "${1:-}" = --update ]; then update=1; shift; fi
build=${1:?usage: check_abi.sh [--update] BUILD_DIR}
command -v abidiff >/dev/null || { echo "check_abi: abigail-tools is not installed" >&2; exit 1; }
mkdir -p abi
status=0
for lib in libo11y libo11y-sqlite libo11y-redis libo11y-curl libo11y-h2o; do
    so=$build/$lib.so
    base=abi/$lib.abi
    if [ $update = 1 ]; then
        abidw --headers-dir include/o11y --no-corpus-path --out-file "$base" "$so"
        echo "abi: $base written"
        continue
    fi
    rc=0
    out=$(abidiff --headers-dir2 include/o11y "$base" "$so" 2>&1) || rc=$?
    if [ $((rc & 3)) -ne 0 ]; then
        echo "abi: abidiff could not compare $lib (rc $rc):" >&2; echo "$out" >&2; status=1
    elif [ $((rc & 12)) -ne 0 ]; then
        # abidiff calls a struct's new layout a "change", not "incompatible": only additions
        # are let through.
        if grep -qE '[1-9][0-9]* (Removed|Changed)' <<<"$out"; then
            echo "abi: $lib has an INCOMPATIBLE change against $base:" >&2; echo "$out" >&2; status=1
        else
            echo "abi: $lib adds to the ABI of $base (compatible):"; echo "$out"
        fi
    fi
done
[ $update = 0 ] && [ $status = 0 ] && echo "abi: no incompatible change against abi/"
exit $status
