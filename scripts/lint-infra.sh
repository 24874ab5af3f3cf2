#!/usr/bin/env bash
# Lints infra/template.yaml with cfn-lint from the test venv (installed by
# scripts/test-env.sh from tests/requirements.txt). Exits non-zero on errors.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# test-env.sh creates/updates the venv; it also starts moto, which costs a second.
exec "$ROOT/scripts/test-env.sh" bash -c '"$PROVISYNC_TEST_VENV/bin/cfn-lint" "$@"' lint-infra "${@:-$ROOT/infra/template.yaml}"
