#!/usr/bin/env bash
# Install everything the test suite needs, then run it: `./scripts/test.sh [pytest args]`.
#
# - Python packages go into a virtual environment (.venv, or $KANTOOR_VENV).
# - The Debian client tools some tests drive are installed with apt-get when we
#   can (root on Debian); a test whose tool is still missing skips with the tool's
#   name, except in CI (CI=true) where it fails.
# - PostgreSQL storage tests use $KANTOOR_TEST_POSTGRES (default: the local server
#   at 127.0.0.1:5432); they skip when it is unreachable, except in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${KANTOOR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
VENV="$(cd "$VENV" && pwd)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'

# Client tools driven by the tests (Debian package names).
DEBIAN_TOOLS=(curl swaks litmus cadaver rclone isync offlineimap3 davfs2)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    missing=()
    for pkg in "${DEBIAN_TOOLS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
            || echo "warning: could not install ${missing[*]}; tests that need them will skip"
    fi
fi

# Python client tools installed in the venv (vdirsyncer …) must be on PATH for the tests.
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
