#!/usr/bin/env bash
# Builds MinIO (an S3-compatible object store: the S3 snapshot repository's test server, tests/e2e/test_snapshots_s3.py)
# from the Go module proxy into ~/.cache/duro-tools/minio-<version>/minio. Skips when the binary exists. The first
# build takes about 16 minutes on two busy cores; later runs use the cache.
set -euo pipefail
version=v0.0.0-20260212201848-7aac2a2c5b7c  # github.com/minio/minio, 2026-02-12
dir="$HOME/.cache/duro-tools/minio-$version"
if [ -x "$dir/minio" ]; then
  echo "62-minio: $dir/minio is cached"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "62-minio: no Go toolchain on PATH; the S3 snapshot tests will skip" >&2
  exit 0
fi
started=$(date +%s)
mkdir -p "$dir"
(cd /tmp && GOBIN="$dir" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$version")
echo "62-minio: built $dir/minio in $(( $(date +%s) - started ))s"
