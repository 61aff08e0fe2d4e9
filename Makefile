# Ferry's build and test entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: all build release test test-rust test-clients kcat fmt-check lint bench serve

all: build

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p ferry

# Every test: unit, property, crash and end-to-end (the e2e tests start the real binary).
test: fmt-check test-rust test-clients

# Unit, property, crash and end-to-end tests, plus doc tests. Benchmarks are compiled (so they
# cannot rot) but not run: they are measurements, not tests.
test-rust:
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace

# Real clients (boto3, the AWS CLI, confluent-kafka, kafka-python, kcat) against the real binary.
VENV ?= .venv
$(VENV)/.installed: tests/clients/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/clients/requirements.txt
	touch $@

kcat:
	@command -v kcat >/dev/null 2>&1 || { \
	  echo "installing kcat from Debian's packages"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat) >/dev/null; }

# One pytest process per suite: the suites share file names (test_fifo.py in sqs/ and sns/).
CLIENT_SUITES = tests/clients/test_harness.py tests/clients/sqs tests/clients/sns tests/clients/kafka
# The same build command as test-rust, so after it this is a no-op (a narrower `-p ferry` build
# resolves features differently and would compile the binary again).
test-clients: $(VENV)/.installed kcat
	$(CARGO) build --workspace --all-targets
	@set -e; for suite in $(CLIENT_SUITES); do \
	  echo "== pytest $$suite"; \
	  FERRY_BIN=$(CURDIR)/target/debug/ferry $(VENV)/bin/pytest -q -p no:cacheprovider $$suite; \
	done

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
