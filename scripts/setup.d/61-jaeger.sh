#!/usr/bin/env bash
# Builds Jaeger's all-in-one program (the tracing test's OTLP receiver and query API, tests/e2e/test_traces.py)
# from the Go module proxy into ~/.cache/duro-tools/jaeger-<version>/all-in-one. Skips when the binary exists.
# `go install pkg@version` refuses modules with replace directives, which Jaeger's go.mod has, so the module is
# downloaded, copied and built as the main module.
set -euo pipefail
version=v1.76.0
dir="$HOME/.cache/duro-tools/jaeger-$version"
if [ -x "$dir/all-in-one" ]; then
  echo "61-jaeger: $dir/all-in-one is cached"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "61-jaeger: no Go toolchain on PATH; the tracing test will skip" >&2
  exit 0
fi
started=$(date +%s)
module_dir=$(cd /tmp && go mod download -json "github.com/jaegertracing/jaeger@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
source_dir="$dir/src"
rm -rf "$source_dir"
mkdir -p "$dir"
cp -r "$module_dir" "$source_dir"
chmod -R u+w "$source_dir"
(cd "$source_dir" && GOFLAGS=-buildvcs=false go build -mod=mod -o "$dir/all-in-one" ./cmd/all-in-one)
rm -rf "$source_dir"
echo "61-jaeger: built $dir/all-in-one in $(( $(date +%s) - started ))s"
