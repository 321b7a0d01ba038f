#!/usr/bin/env bash
# make test's TypeScript step: the kit (clients/typescript) is installed from its lockfile,
# its generated API types are checked against the OpenAPI document, it and the console are
# compiled strictly, and its tests run against the generation-service just built (BUILD_DIR),
# the console's in headless Chromium (screenshots in BUILD_DIR/test-artifacts/browser).
#   scripts/test_ts.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/../clients/typescript"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "test_ts: node and npm are needed (Node.js 20 or later)" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "test_ts: Node.js $(node --version) is too old: the kit needs 20 or later" >&2
    exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
GS_BINARY="$build/services/generation-service/generation-service" CONSOLE_DIR="$build/console" \
    O11Y_ARTIFACTS="$build/test-artifacts/browser" npm test
