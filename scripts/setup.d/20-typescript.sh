#!/usr/bin/env bash
# Installs tests/compat/typescript/ from its lock file (npm ci: the Restate TypeScript
# SDK, its ingress client, the `restate` CLI and TypeScript) and compiles it with tsc
# into dist/ (the compatibility matrix's TypeScript endpoint and the ingress-client check).
# Skips each part when it is up to date: node_modules with package.json and
# package-lock.json, dist/ with those plus tsconfig.json and src/.
set -euo pipefail
cd "$(dirname "$0")/../../tests/compat/typescript"

MIN_NODE_MAJOR=20
INSTALL_STAMP=node_modules/.duro-install.sha256
BUILD_STAMP=dist/.duro-build.sha256

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "20-typescript: node and npm (Node.js >= $MIN_NODE_MAJOR) are needed for the TypeScript compatibility column" >&2
  exit 1
}
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt "$MIN_NODE_MAJOR" ]; then
  echo "20-typescript: Node.js >= $MIN_NODE_MAJOR needed, found $(node --version)" >&2
  exit 1
fi

digest() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

install_digest="$(digest package.json package-lock.json)"
if [ "$(cat "$INSTALL_STAMP" 2>/dev/null)" != "$install_digest" ]; then
  # --ignore-scripts: no package here needs an install script (the CLI binary is a
  # platform package), and it keeps the CLI wrapper's analytics hook from running.
  SCARF_ANALYTICS=false npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error
  echo "$install_digest" >"$INSTALL_STAMP"
else
  echo "20-typescript: node_modules up to date"
fi

build_digest="$(digest package-lock.json tsconfig.json $(find src -type f -name '*.ts' | LC_ALL=C sort))"
if [ "$(cat "$BUILD_STAMP" 2>/dev/null)" != "$build_digest" ] || [ ! -f dist/endpoint.js ]; then
  rm -rf dist
  node_modules/.bin/tsc -p tsconfig.json
  echo "$build_digest" >"$BUILD_STAMP"
else
  echo "20-typescript: dist up to date"
fi
