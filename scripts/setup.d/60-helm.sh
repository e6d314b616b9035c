#!/usr/bin/env bash
# Builds Helm (the chart's lint and template checks, tests/e2e/test_helm_chart.py) from the Go module proxy
# into ~/.cache/duro-tools/helm-<version>/helm. Skips when that binary exists.
set -euo pipefail
version=v3.22.0
dir="$HOME/.cache/duro-tools/helm-$version"
if [ -x "$dir/helm" ]; then
  echo "60-helm: $dir/helm is cached"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "60-helm: no Go toolchain on PATH; the chart tests will skip" >&2
  exit 0
fi
started=$(date +%s)
mkdir -p "$dir"
GOBIN="$dir" GOFLAGS=-buildvcs=false go install "helm.sh/helm/v3/cmd/helm@$version"
echo "60-helm: built $dir/helm in $(( $(date +%s) - started ))s"
