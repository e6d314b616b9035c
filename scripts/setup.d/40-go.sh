#!/usr/bin/env bash
# Builds the compatibility suite's Go endpoint (tests/compat/go) into bin/compat-go,
# fetching the modules pinned by go.mod/go.sum into the Go module cache. Skips when the
# binary is newer than go.mod, go.sum and every .go file.
set -euo pipefail
cd "$(dirname "$0")/../../tests/compat/go"
binary=bin/compat-go
if ! command -v go >/dev/null 2>&1; then
  echo "40-go: no Go toolchain on PATH (expected /usr/local/go/bin/go); skipping the Go endpoint" >&2
  exit 0
fi
if [ -x "$binary" ] && [ -z "$(find . -path ./bin -prune -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$binary" -print -quit)" ]; then
  echo "40-go: $binary is up to date"
  exit 0
fi
started=$(date +%s)
go build -mod=readonly -buildvcs=false -o "$binary" .  # fetches missing modules, checked against go.sum
touch "$binary"  # go build leaves an unchanged binary untouched
echo "40-go: built $binary in $(( $(date +%s) - started ))s"
