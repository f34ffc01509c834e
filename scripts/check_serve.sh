#!/usr/bin/env bash
# The README's first command on a fresh virtual environment: `pip install -e .` (the runtime requirements only,
# none of the test extras, which once hid a missing one) and `kantoor serve` must start and say it is ready.
# Ephemeral ports and a throw-away data folder, so it runs beside anything. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet -e .
(
    cd "$work"
    export KANTOOR_STORAGE_DATA_DIR="$work/data"
    for port in HTTP HTTPS IMAP IMAPS SMTP SUBMISSION SUBMISSIONS; do export "KANTOOR_PORTS_$port=0"; done
    "$work/venv/bin/kantoor" serve > "$work/serve.log" 2>&1 &
    echo $! > "$work/pid"
)
for _ in $(seq 1 120); do
    if grep -q '^KANTOOR-READY ' "$work/serve.log"; then
        echo "kantoor serve (runtime requirements only): $(grep '^KANTOOR-READY ' "$work/serve.log")"
        exit 0
    fi
    if ! kill -0 "$(cat "$work/pid")" 2>/dev/null; then
        break
    fi
    sleep 1
done
echo "kantoor serve did not become ready; its output:" >&2
cat "$work/serve.log" >&2
exit 1
