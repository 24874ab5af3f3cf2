# Provisync — every developer and CI command goes through here.
# `make run` and `make test` need nothing installed by hand beyond the Rust toolchain and
# python3: the test peers (AWS emulator, reference SCIM server, conformance tester,
# cfn-lint, Playwright) are installed from PyPI into .venv by scripts/test-env.sh and run on
# loopback; the console's browser tests install Debian's chromium when missing (as root).

CARGO ?= cargo

.PHONY: run build test lint lint-infra fmt bench package deploy deploy-check cold-start clean

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
## sink, to scim2-server and to a rate-limited target; one page of /Users at 1k, 20k and 100k
## users (time and store reads). scim2-server comes from the test venv.
bench:
	scripts/test-env.sh $(CARGO) bench -p provisync-tests --bench scim_http
	scripts/test-env.sh $(CARGO) bench -p provisync-tests --bench delivery
	scripts/test-env.sh $(CARGO) bench -p provisync-tests --bench directory_pages

## The Lambda artefacts, as `make deploy` builds them: `sam build` (cargo-lambda, arm64,
## stripped) into infra/.aws-sam/build. Tools from PyPI into .venv-deploy.
package:
	scripts/deploy.sh build

## Build and deploy the built template with SAM (asks for the stack's parameters the first
## time and saves them to infra/samconfig.local.toml). See README, "Deploy to AWS".
deploy:
	scripts/deploy.sh deploy

## What `make deploy` would upload, uploaded to the AWS emulator's S3 (moto, loopback) and
## checked: five stripped aarch64 bootstraps and nothing else. Slow (release builds): not
## part of `make test`.
deploy-check:
	scripts/deploy.sh check

## Init time and peak memory of the HTTP functions under a Lambda Runtime API stand-in,
## next to a bare lambda_http binary built the same way (on the AWS emulator).
cold-start:
	scripts/cold-start.sh

clean:
	$(CARGO) clean
	rm -rf .venv .venv-deploy .test-env infra/.aws-sam
