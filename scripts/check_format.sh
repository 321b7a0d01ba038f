#!/usr/bin/env bash
# Fails when a C file differs from .clang-format (clang-format from Debian; scripts/deps.sh test
# installs it). Fix with: git ls-files '*.c' '*.h' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check_format: clang-format is not installed" >&2; exit 1; }
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src include services tests bench examples -name '*.[ch]')
bad=0
for f in $files; do
    [ -f "$f" ] || continue # deleted, not yet committed
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f" >&2
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "format: every C file follows .clang-format"
exit $bad
