#!/usr/bin/env bash
# SCIM conformance, tried as a new user would: start `provisync serve` on a fresh data
# folder, then run the independent checker `scim2 test` (scim2-tester, from the test venv)
# against the printed base URL with the printed token. Runs twice: on the embedded store,
# and on DynamoDB in the moto emulator after `provisync aws-init` (when scripts/test-env.sh
# started one). Fails on any checker error.
#
# Usage (normally through `make test`): scripts/test-env.sh scripts/conformance.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${PROVISYNC_TEST_VENV:?run through scripts/test-env.sh}"
SCIM2="$PROVISYNC_TEST_VENV/bin/scim2"
PY="$PROVISYNC_TEST_VENV/bin/python"

cargo build --quiet -p provisync-cli --bin provisync
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/provisync"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

total_pass=0
total_fail=0

# run_checker NAME [ENV=VALUE ...]
run_checker() {
    local name="$1"; shift
    local port; port="$(free_port)"
    local out="$WORK/$name.serve.log"
    env "$@" PORT="$port" PROVISYNC_DATA_DIR="$WORK/$name-data" PROVISYNC_SCIM_TOKEN= "$BIN" serve >"$out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        grep -q "SCIM token" "$out" 2>/dev/null && break
        sleep 0.1
    done
    url="$(awk '/SCIM base URL:/ {print $4}' "$out")"
    token="$(awk '/SCIM token:/ {print $3}' "$out")"
    if [ -z "$url" ] || [ -z "$token" ]; then
        echo "conformance[$name]: server did not start:" >&2
        cat "$out" >&2
        exit 1
    fi
    # The token goes through the environment, not the command line (scim2-cli's advice).
    local report="$WORK/$name.report"
    SCIM_CLI_HEADERS="Authorization: Bearer $token" "$SCIM2" --url "$url" test >"$report" 2>&1 || true
    local pass fail
    pass="$(grep -c '^SUCCESS' "$report" || true)"
    fail="$(grep -c -E '^(ERROR|CRITICAL)' "$report" || true)"
    echo "conformance[$name]: $pass checks passed, $fail failed ($url)"
    if [ "$fail" != "0" ] || [ "$pass" = "0" ]; then
        grep -A4 -E '^(ERROR|CRITICAL)' "$report" >&2 || tail -20 "$report" >&2
        total_fail=$((total_fail + fail + 1))
    fi
    total_pass=$((total_pass + pass))
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

run_checker embedded
stop_server

if [ -n "${PROVISYNC_TEST_MOTO:-}" ]; then
    suffix="$(date +%s)-$$"
    aws_env=(PROVISYNC_BACKEND=aws AWS_ENDPOINT_URL="$PROVISYNC_TEST_MOTO"
             PROVISYNC_TABLE="conformance-$suffix" PROVISYNC_QUEUE="conformance-$suffix")
    env "${aws_env[@]}" "$BIN" aws-init
    run_checker dynamodb "${aws_env[@]}"
    # The checker cleans up after itself: provision one user through the hub and look
    # for its items in the emulator's table, read with boto3 (an independent client).
    if env "${aws_env[@]}" SCIM_URL="$url" SCIM_TOKEN="$token" "$PY" - <<'PY'
import json, os, urllib.request, boto3
req = urllib.request.Request(os.environ["SCIM_URL"] + "/Users", method="POST",
    data=json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "probe@example.org"}).encode(),
    headers={"Authorization": "Bearer " + os.environ["SCIM_TOKEN"], "Content-Type": "application/scim+json"})
uid = json.load(urllib.request.urlopen(req))["id"]
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
item = ddb.get_item(TableName=os.environ["PROVISYNC_TABLE"], Key={"pk": {"S": "USER#" + uid}, "sk": {"S": "USER"}}, ConsistentRead=True).get("Item")
assert item, "user item missing from the DynamoDB table"
count = ddb.scan(TableName=os.environ["PROVISYNC_TABLE"], Select="COUNT")["Count"]
print(f"conformance[dynamodb]: user {uid} is in the table ({count} items)")
PY
    then :; else echo "DynamoDB check failed" >&2; total_fail=$((total_fail + 1)); fi
    stop_server
fi

echo "conformance: $total_pass passed, $total_fail failed"
[ "$total_fail" = "0" ]
