# Ferry's build and test entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: all build release test test-rust fmt-check lint bench serve

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p ferry

# Every test: unit, property, crash and end-to-end (the e2e tests start the real binary).
test: fmt-check test-rust

test-rust:
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

serve:
	$(CARGO) run --release -- serve

# Engine and storage benchmarks (not run by `make test`); results go to docs/benchmarks.md.
bench:
	$(CARGO) bench -p ferry-log
	$(CARGO) bench -p ferry-broker --bench queue_throughput
