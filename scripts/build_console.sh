#!/usr/bin/env bash
# Bundles the web console (clients/typescript/console) into OUT_DIR: console.js (esbuild,
# minified, with its source map), index.html, console.css. Installs the kit's packages from the
# lockfile first when they are missing.
#   scripts/build_console.sh OUT_DIR
set -euo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/../clients/typescript"
[ -x node_modules/.bin/esbuild ] || npm ci --no-audit --no-fund --loglevel=error
node_modules/.bin/esbuild console/main.ts --bundle --minify --format=esm --target=es2022 \
    --sourcemap --log-level=warning --outfile="$out/console.js"
cp console/index.html console/console.css "$out/"
