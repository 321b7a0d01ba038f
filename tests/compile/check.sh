#!/usr/bin/env bash
# Checks that the API refuses mistakes at compile time: each file compiles as it is (the control)
# and fails to compile with its flag set, for the reason expected.
set -euo pipefail
cc=$1
inc=$2
dir=$(dirname "$0")
flags=(-std=c17 -Wall -Wextra -Werror -fsyntax-only -I "$inc" $(pkg-config --cflags jansson))
fail=0
check() { # file, define, a word the compiler's complaint must contain
    "$cc" "${flags[@]}" "$dir/$1" || { echo "control $1 does not compile" >&2; fail=1; return; }
    if out=$("$cc" "${flags[@]}" -D"$2" "$dir/$1" 2>&1); then
        echo "$1 with $2 compiled: the mistake is not caught" >&2
        fail=1
    elif ! grep -q "$3" <<<"$out"; then
        echo "$1 with $2 failed for another reason:" >&2
        echo "$out" >&2
        fail=1
    fi
}
check log_fields.c UNTYPED "_Generic\|association"
check errors.c MISSPELT "o11y_err_NOT_FUOND"
[ $fail = 0 ] && echo "compile checks: untyped log fields and misspelt error codes do not compile"
exit $fail
