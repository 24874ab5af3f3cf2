#!/usr/bin/env bash
# The operator console's browser tests (tests/browser): Playwright for Python (pinned in
# tests/requirements.txt) drives Debian's own Chromium; no browser is downloaded.
# Run through scripts/test-env.sh (which provides the venv); `make test` does.
# Needs the `provisync` binary built (`make test` builds it first). Installs Debian's
# `chromium` package when it is missing and this runs as root (CI on a fresh machine);
# otherwise says how to. Screenshots of every page go to .test-env/console-screenshots
# (PROVISYNC_SCREENSHOTS), printed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHROMIUM="${PROVISYNC_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "browser-tests: installing Debian's chromium" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq chromium >&2
    else
        echo "browser-tests: $CHROMIUM is missing: install Debian's chromium package (apt-get install chromium, as root)" >&2
        exit 1
    fi
fi
VENV="${PROVISYNC_TEST_VENV:-$ROOT/.venv}"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest tests/browser -q -p no:cacheprovider
