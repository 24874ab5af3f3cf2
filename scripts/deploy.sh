#!/usr/bin/env bash
# Usage: scripts/deploy.sh tools | build | deploy [SAM DEPLOY ARGS...] | check
#
# The one path from sources to AWS (`make package`, `make deploy`, `make deploy-check`):
#
#   tools   install the deploy tools only (what every other command does first).
#   build   `sam build` of infra/template.yaml: SAM's rust-cargolambda builder runs
#           `cargo lambda build --release --arm64 --bin <function>` in each of the five
#           functions' own crate folder (their CodeUri; provided.al2023, aarch64) and puts each `bootstrap` in a folder of
#           infra/.aws-sam/build, with the built template that points at those folders.
#   deploy  build, then `sam deploy` of that built template (guided the first time; the
#           answers are saved to infra/samconfig.local.toml and used from then on).
#   check   build, then `sam package` of that built template against the S3 of the AWS
#           emulator (moto on loopback, from scripts/test-env.sh) and a check of every
#           uploaded artefact (scripts/deploy_check.py): what `deploy` would upload.
#
# Needs only python3 and rustup: aws-sam-cli, cargo-lambda and the zig toolchain it links
# with come from PyPI (infra/requirements.txt) into .venv-deploy; the Rust standard
# library for aarch64-unknown-linux-gnu is added with rustup when missing. Builds go to
# $CARGO_TARGET_DIR (default ./target) like every other cargo build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-deploy"
REQ="$ROOT/infra/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"
TARGET="aarch64-unknown-linux-gnu"
BUILT="$ROOT/infra/.aws-sam/build"

log() { echo "deploy: $*" >&2; }

ensure_tools() {
    local want have=""
    want="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$REQ")"
    [ -f "$STAMP" ] && have="$(cat "$STAMP")"
    if [ "$want" != "$have" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
            log "creating $VENV"
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV"
        fi
        log "installing the deploy tools from infra/requirements.txt"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ" >&2
        echo "$want" >"$STAMP"
    fi
    if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
        log "adding the Rust target $TARGET"
        rustup target add "$TARGET" >&2
    fi
    # sam finds `cargo` and `cargo-lambda` on PATH, cargo-lambda finds zig.
    export PATH="$VENV/bin:$PATH"
    export SAM_CLI_TELEMETRY=0
}

build() {
    ensure_tools
    # As small as the binaries can be: symbols stripped, abort on panic (the functions never
    # panic on input: a panic is a bug, and the runtime restarts the environment), one
    # codegen unit and whole-program LTO. Set here rather than in Cargo.toml so `make run`
    # keeps its faster release build; scripts/cold-start.sh builds with the same settings.
    export CARGO_PROFILE_RELEASE_STRIP=symbols
    export CARGO_PROFILE_RELEASE_LTO=fat
    export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
    export CARGO_PROFILE_RELEASE_PANIC=abort
    rm -rf "$BUILT"
    (cd "$ROOT/infra" && sam validate --lint --template-file template.yaml --region "${AWS_REGION:-us-east-1}" &&
        sam build --template-file template.yaml --build-dir "$BUILT")
    log "built: $BUILT/template.yaml"
}

case "${1:-}" in
tools)
    ensure_tools
    ;;
build)
    build
    ;;
deploy)
    shift
    build
    cd "$ROOT/infra"
    if [ -f samconfig.local.toml ]; then
        sam deploy --template-file "$BUILT/template.yaml" --config-file samconfig.local.toml "$@"
    else
        log "first deploy: answer the questions (save them to samconfig.local.toml)"
        sam deploy --guided --template-file "$BUILT/template.yaml" "$@"
    fi
    ;;
check)
    build
    exec "$ROOT/scripts/test-env.sh" "$VENV/bin/python" "$ROOT/scripts/deploy_check.py" "$BUILT/template.yaml"
    ;;
*)
    echo "usage: $0 tools | build | deploy [SAM DEPLOY ARGS...] | check" >&2
    exit 2
    ;;
esac
