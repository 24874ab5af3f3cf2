#!/usr/bin/env bash
# Usage: scripts/test-env.sh CMD [ARGS...]
#
# Runs CMD with the integration-test peers up, on loopback only:
#   - a Python venv at .venv with the pinned packages of tests/requirements.txt
#     (created on first use, reinstalled only when that file changes);
#   - moto_server (AWS emulator: DynamoDB, SQS) on 127.0.0.1:<free port>, through
#     scripts/moto_server.py (moto without its per-object tracking and whole-table
#     copies, whose memory and time grew with the run: see that file).
# CMD sees PROVISYNC_TEST_MOTO, PROVISYNC_TEST_VENV, PROVISYNC_REQUIRE_PEERS=1 and dummy
# AWS credentials. moto is stopped when CMD ends (also on failure or Ctrl-C); the script
# exits with CMD's status. Needs only python3 (with venv/pip) on the machine.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQ="$ROOT/tests/requirements.txt"
STATE="$ROOT/.test-env"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

mkdir -p "$STATE"

log() { echo "test-env: $*" >&2; }

ensure_venv() {
    local want have=""
    want="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$REQ")"
    if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ]; then
        have="$(cat "$STAMP")"
    fi
    if [ "$want" = "$have" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "creating $VENV"
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV"; then
            log "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
            exit 1
        fi
    fi
    log "installing test peers from tests/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >&2
    echo "$want" >"$STAMP"
}

# Two test runs at once must not install into the same venv together.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE/venv.lock"
    flock 9
    ensure_venv
    flock -u 9
else
    ensure_venv
fi

free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

MOTO_PID=""
cleanup() {
    if [ -n "$MOTO_PID" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
        kill "$MOTO_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$MOTO_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    MOTO_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_moto() {
    local attempt port
    for attempt in 1 2 3; do
        port="$(free_port)"
        "$VENV/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$STATE/moto.log" 2>&1 &
        MOTO_PID=$!
        # Wait until it answers (up to ~30 s).
        for _ in $(seq 1 300); do
            if ! kill -0 "$MOTO_PID" 2>/dev/null; then
                break
            fi
            if "$VENV/bin/python" - "$port" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1).read()
PY
                MOTO_URL="http://127.0.0.1:$port"
                return 0
            fi
            sleep 0.1
        done
        log "moto_server did not come up on port $port (attempt $attempt); log:"
        tail -n 20 "$STATE/moto.log" >&2 || true
        cleanup
    done
    return 1
}

if ! start_moto; then
    log "could not start moto_server"
    exit 1
fi
log "moto_server on $MOTO_URL (pid $MOTO_PID)"

export PROVISYNC_TEST_MOTO="$MOTO_URL"
export PROVISYNC_TEST_VENV="$VENV"
export PROVISYNC_REQUIRE_PEERS=1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL || true

set +e
"$@"
status=$?
set -e
exit "$status"
