# Provisync — every developer and CI command goes through here.
# `make run` and `make test` need nothing installed by hand beyond the Rust toolchain and
# python3: the test peers (AWS emulator, reference SCIM server, conformance tester,
# cfn-lint, Playwright) are installed from PyPI into .venv by scripts/test-env.sh and run on
# loopback; the console's browser tests install Debian's chromium when missing (as root).

CARGO ?= cargo

.PHONY: run build test lint lint-infra fmt bench package deploy clean

## Run the whole hub locally on 127.0.0.1:8787 (env PORT) with the embedded store.
run:
	$(CARGO) run --release -p provisync-cli --bin provisync -- serve

build:
	$(CARGO) build --workspace --all-targets

## Every test: unit, integration over HTTP, DynamoDB/SQS on moto, the console in a
## headless Chromium (installed from Debian when missing), SCIM conformance.
test:
	$(CARGO) build -p provisync-cli --bin provisync   # tests/restart.rs runs the real binary
	scripts/test-env.sh $(CARGO) test --workspace --all-targets --no-fail-fast
	scripts/test-env.sh scripts/browser-tests.sh    # the console in Debian's Chromium
	scripts/test-env.sh scripts/conformance.sh

lint: lint-infra
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## cfn-lint on infra/template.yaml (from the test venv).
lint-infra:
	scripts/lint-infra.sh

fmt:
	$(CARGO) fmt --all

## Requests/s and latency of SCIM creates (group commit, one flush per transaction, and
## scim2-server side by side) and userName lookups over loopback HTTP; delivery to a fast
## sink, to scim2-server and to a rate-limited target. scim2-server comes from the test venv.
bench:
	scripts/test-env.sh $(CARGO) bench -p provisync-tests --bench scim_http
	scripts/test-env.sh $(CARGO) bench -p provisync-tests --bench delivery

## Lambda artifacts (arm64, cargo-lambda) in target/lambda/.
package:
	scripts/package.sh

## Deploy with SAM (asks for stack name, region, parameters the first time).
deploy: package
	cd infra && sam deploy --guided --template-file template.yaml

clean:
	$(CARGO) clean
	rm -rf .venv .test-env
