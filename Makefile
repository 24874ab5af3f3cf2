# Provisync — every developer and CI command goes through here.
# `make run` and `make test` need nothing installed by hand beyond the Rust toolchain and
# python3: the test peers (AWS emulator, reference SCIM server) are installed from PyPI into
# .venv by scripts/test-env.sh and run on loopback only.

CARGO ?= cargo
PORT ?= 8787

.PHONY: run build test lint fmt bench package deploy clean

run:
	$(CARGO) run --release -p provisync-cli --bin provisync -- serve

build:
	$(CARGO) build --workspace --all-targets

test:
	scripts/test-env.sh $(CARGO) test --workspace --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench -p provisync-tests --bench scim_http

clean:
	$(CARGO) clean
	rm -rf .venv
