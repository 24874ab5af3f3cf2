#!/usr/bin/env bash
# Usage: scripts/cold-start.sh
#
# Cold start of the HTTP functions next to a bare lambda_http binary, both built the same
# way for this machine (the workspace's release profile, then stripped with `strip` when
# the machine has it), measured under a Lambda Runtime API stand-in on the AWS emulator
# (tests/benches/cold_start.rs). Prints medians. The deploy builds (`make deploy-check`)
# add fat LTO and one codegen unit for aarch64; a full second build of every dependency
# with those settings is left out here: what is compared is a function against the bare
# binary built like it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIR="$ROOT/.test-env/cold-start"
mkdir -p "$DIR/examples"
cargo build --release -p scim-api -p webhook-ingest -p admin-api
cargo build --release -p scim-api --example bare_lambda_http
# Kept aside: the next release build may replace them in the target folder.
cp "$TARGET_DIR/release/scim-api" "$TARGET_DIR/release/webhook-ingest" "$TARGET_DIR/release/admin-api" "$DIR/"
cp "$TARGET_DIR/release/examples/bare_lambda_http" "$DIR/examples/"
if command -v strip >/dev/null 2>&1; then
    strip "$DIR/scim-api" "$DIR/webhook-ingest" "$DIR/admin-api" "$DIR/examples/bare_lambda_http"
fi
exec scripts/test-env.sh cargo bench -p provisync-tests --bench cold_start -- "$DIR"
