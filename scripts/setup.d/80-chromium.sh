#!/usr/bin/env bash
# The web console's browser tests (tests/e2e/test_console.py) drive Debian's Chromium with Playwright
# (Playwright's own browser download does not work here). Installs the `chromium` Debian package when
# /usr/bin/chromium is missing (apt-get update once, then install), and the `playwright` Python package
# when it is not importable (it is in the test extra, so scripts/setup normally installed it already).
# Skips what is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "80-chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
else
  echo "80-chromium: installing chromium (Debian package)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "80-chromium: could not install chromium; the console's browser tests will skip" >&2
  fi
fi
if ! python3 -c 'import playwright' >/dev/null 2>&1; then
  echo "80-chromium: installing playwright (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check 'playwright==1.65.2'
fi
