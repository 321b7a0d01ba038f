#!/usr/bin/env bash
# Fails when an exported function in include/o11y/ has no comment: every O11Y_API declaration
# must follow a comment, directly or as part of a group of declarations under one comment.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for h in include/o11y/*.h; do
    awk -v file="$h" '
        function significant(line) { return line !~ /^[[:space:]]*$/ }
        {
            if (in_decl) {                      # inside a declaration that began with O11Y_API
                if ($0 ~ /;/) { in_decl = 0; last = "api" }
                next
            }
            if ($0 ~ /^O11Y_API/) {
                if (last != "comment" && last != "api") {
                    printf "%s:%d: exported without a comment: %s\n", file, NR, $0
                    bad = 1
                }
                if ($0 ~ /;/) last = "api"; else in_decl = 1
                next
            }
            if (!significant($0)) next
            last = ($0 ~ /\*\/[[:space:]]*$/) ? "comment" : "other"
        }
        END { exit bad }
    ' "$h" || status=1
done
[ $status -eq 0 ] && echo "api docs: every exported function has a comment"
exit $status
