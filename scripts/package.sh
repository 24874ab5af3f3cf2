#!/usr/bin/env bash
# Usage: scripts/package.sh [FUNCTION...]
#
# Builds the Lambda artifacts (provided.al2023, arm64) with cargo-lambda: one
# bootstrap.zip per function under $CARGO_TARGET_DIR/lambda/<function>/ (default
# target/lambda/...). Without arguments, every function crate under functions/ that the
# SAM template deploys and that exists in the workspace.
#
# Needs only python3 and rustup: cargo-lambda (and the zig toolchain it cross-links
# with, the `ziglang` PyPI package) are installed from PyPI into .venv; the Rust standard
# library for aarch64-unknown-linux-gnu is added with rustup if missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
CARGO_LAMBDA_VERSION="1.9.2"
TARGET="aarch64-unknown-linux-gnu"
ALL_FUNCTIONS=(scim-api webhook-ingest admin-api queue-deliver scheduled-sync)

log() { echo "package: $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/cargo-lambda" --version 2>/dev/null | grep -q "$CARGO_LAMBDA_VERSION"; then
    log "installing cargo-lambda $CARGO_LAMBDA_VERSION (with ziglang) into .venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION" >&2
fi
# cargo finds `cargo-lambda` (and cargo-lambda finds `python-zig`) on PATH.
export PATH="$VENV/bin:$PATH"

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    log "adding the Rust target $TARGET"
    rustup target add "$TARGET" >&2
fi

if [ "$#" -gt 0 ]; then
    FUNCTIONS=("$@")
else
    FUNCTIONS=()
    for f in "${ALL_FUNCTIONS[@]}"; do
        if [ -f "$ROOT/functions/$f/Cargo.toml" ]; then
            FUNCTIONS+=("$f")
        else
            log "skipping $f: functions/$f does not exist yet"
        fi
    done
fi

cd "$ROOT"
args=()
for f in "${FUNCTIONS[@]}"; do
    args+=(--package "$f")
done
cargo lambda build --release --arm64 --output-format zip "${args[@]}"
for f in "${FUNCTIONS[@]}"; do
    log "built ${CARGO_TARGET_DIR:-$ROOT/target}/lambda/$f/bootstrap.zip"
done
