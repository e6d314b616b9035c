#!/usr/bin/env bash
# Builds Jaeger (the tracing test's OTLP receiver and query API, tests/e2e/test_traces.py) from the Go module proxy
# into ~/.cache/duro-tools/jaeger-<version>/. Skips when the binary exists.
set -euo pipefail
version=v1.76.0
dir="$HOME/.cache/duro-tools/jaeger-$version"
if [ -x "$dir/all-in-one" ] || [ -x "$dir/jaeger" ]; then
  echo "61-jaeger: cached in $dir"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "61-jaeger: no Go toolchain on PATH; the tracing test will skip" >&2
  exit 0
fi
started=$(date +%s)
mkdir -p "$dir"
GOBIN="$dir" GOFLAGS=-buildvcs=false go install "github.com/jaegertracing/jaeger/cmd/all-in-one@$version"
echo "61-jaeger: built $dir/all-in-one in $(( $(date +%s) - started ))s"
