# mongo-pool: every entry point the README names. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV := .venv
NODE_DRIVERS := tests/drivers/node
FUZZ_SECONDS ?= 60

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tests/requirements.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## the Python venv the tests use (pymongo, pymongo-auth-aws, moto)

$(NODE_DRIVERS)/node_modules/.installed: $(NODE_DRIVERS)/package.json $(NODE_DRIVERS)/package-lock.json
	npm ci --prefix $(NODE_DRIVERS) --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: node
node: $(NODE_DRIVERS)/node_modules/.installed ## the Node.js driver the tests use (mongodb)

.PHONY: toolchain
toolchain: ## Rust components the targets use
	@rustup component add rustfmt clippy >/dev/null 2>&1 || true

.PHONY: build
build: ## debug builds of the binaries tests start (atlas-sim, mongo-pool)
	$(CARGO) build --workspace --bins

.PHONY: test
test: toolchain venv node build ## install what tests need, run every suite, print a summary
	scripts/test.sh

.PHONY: fmt
fmt: ## format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: toolchain ## rustfmt check + clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZ_SECONDS (default 60); fails on a crash
	scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: bench
bench: ## benchmarks (for now: the wire codec's criterion bench, bytes/s)
	$(CARGO) bench -p mongo-pool-wire --bench decode
