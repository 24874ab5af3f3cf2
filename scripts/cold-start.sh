#!/usr/bin/env bash
# Usage: scripts/cold-start.sh
#
# Cold start of the HTTP functions next to a bare lambda_http binary, both built with the
# deploy profile (stripped, fat LTO, one codegen unit, panic = abort: what cargo-lambda and
# scripts/deploy.sh use) for this machine, measured under a Lambda Runtime API stand-in on
# the AWS emulator (tests/benches/cold_start.rs). Prints medians.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIR="$ROOT/.test-env/cold-start"
mkdir -p "$DIR/examples"
(
    export CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_LTO=fat
    export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort
    cargo build --release -p scim-api -p webhook-ingest -p admin-api
    cargo build --release -p scim-api --example bare_lambda_http
)
# Kept aside: the next plain release build (`make run`) replaces them in the target folder.
cp "$TARGET_DIR/release/scim-api" "$TARGET_DIR/release/webhook-ingest" "$TARGET_DIR/release/admin-api" "$DIR/"
cp "$TARGET_DIR/release/examples/bare_lambda_http" "$DIR/examples/"
exec scripts/test-env.sh cargo bench -p provisync-tests --bench cold_start -- "$DIR"
