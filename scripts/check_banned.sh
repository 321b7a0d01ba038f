#!/usr/bin/env bash
# Fails when the sources use a banned function (../shared/STYLE.md section 10): unsafe string
# functions anywhere in src/ and services/, raw allocation in src/ outside src/core/alloc.c (the
# optional parts in src/backends/, src/client/ and src/adapters/h2o/ are built on the public API
# alone, so they use the C allocator).
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
unsafe='\b(sprintf|vsprintf|strcat|strncat|strcpy|gets|strtok|atoi|localtime|strerror)\s*\('
if grep -nE "$unsafe" src/ services/ -r --include='*.[ch]'; then
    echo "banned string/time function above" >&2
    status=1
fi
if grep -nE '\b(malloc|calloc|realloc|free|strdup|strndup)\s*\(' src/ -r --include='*.[ch]' \
        | grep -v '^src/core/alloc.c:' | grep -v '^src/backends/' | grep -v '^src/client/' | grep -v '^src/adapters/h2o/' | grep -vE '^\S+:\s*(/\*|\*)'; then
    echo "raw allocation outside src/core/alloc.c above" >&2
    status=1
fi
exit $status
