#!/usr/bin/env bash
# Times the quick start as a new user meets it: a fresh clone of this checkout's HEAD, an empty HOME (so empty
# pip and uv caches) and no .venv. Prints the seconds from starting ./scripts/quickstart to its "duro is ready"
# line, the install's share of them and the load average, then stops the quick start and removes the clone.
# Usage: benchmarks/quickstart_fresh_clone.sh [INGRESS_PORT ADMIN_PORT EXAMPLES_PORT]   (default 8080 9070 9080)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/duro"
mkdir "$work/home"
cd "$work/duro"
export HOME="$work/home" DURO_INGRESS_PORT="${1:-8080}" DURO_ADMIN_PORT="${2:-9070}" DURO_EXAMPLES_PORT="${3:-9080}"
unset PYTHONPATH
started=$(date +%s.%N)
./scripts/quickstart >"$work/output" 2>&1 &
quickstart=$!
deadline=$((SECONDS + 600))
until grep -q "duro is ready" "$work/output"; do
  if ! kill -0 "$quickstart" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; then
    cat "$work/output" >&2
    exit 1
  fi
  sleep 0.1
done
ready=$(date +%s.%N)
kill -INT "$quickstart"
wait "$quickstart" || true
installed=$(sed -n 's/^installed in \([0-9]*\) s$/\1/p' "$work/output")
printf 'ready after %.1f s (install %s s); load average %s\n' "$(echo "$ready - $started" | bc)" "${installed:-?}" "$(cut -d' ' -f1-3 /proc/loadavg)"
