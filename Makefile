# The two commands of the quick start are `make demo` and `make test`; each installs the
# system packages it needs when they are missing, builds, and runs.

SHELL := /bin/bash
PACKAGES := pkg-config gcc g++ libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-x gstreamer1.0-tools \
	mosquitto mosquitto-clients iproute2 faketime nodejs \
	npm chromium fonts-dejavu-core python3-prometheus-client
# `make test` needs these as well (the account across a broker's nodes: `make test-cluster`).
CLUSTER_PACKAGES := rabbitmq-server
# `make bench` needs these as well (instruction counts).
BENCH_PACKAGES := valgrind
CARGO ?= cargo
# `make fuzz`: seconds a fuzz target (`make test` runs each for FUZZ_SMOKE_SECONDS).
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 5

.PHONY: deps cluster-deps build demo test test-stress test-cluster lint schemas bench fuzz loadtest soak

deps:
	@./scripts/deps.sh $(PACKAGES)

cluster-deps:
	@./scripts/deps.sh $(CLUSTER_PACKAGES)

# --lib: the plugin library (libgstcontinuity.so) is what `continuity play` loads.
build: deps
	$(CARGO) build --workspace --lib --bins --examples

demo: build
	@./scripts/demo.sh

# Tests (the cluster tests among them), then formatting and lints where the toolchain has
# rustfmt and clippy, and a short fuzzing run; how long each part took is printed at the end.
test: deps cluster-deps
	@CARGO=$(CARGO) FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) ./scripts/test.sh

# The test suites STRESS_RUNS times while one core is kept busy, and per test how many runs
# it failed (not part of `make test`).
STRESS_RUNS ?= 5
test-stress: deps cluster-deps
	@CARGO=$(CARGO) STRESS_RUNS=$(STRESS_RUNS) ./scripts/stress.sh

# Only the tests of an account across the nodes of a clustered broker (tests/cluster.rs): a
# 2-node RabbitMQ cluster and two bridged mosquittos, started on loopback by the tests.
test-cluster: deps cluster-deps
	$(CARGO) test --test cluster

# Coverage-guided fuzzing (libFuzzer, stable toolchain): each target FUZZ_SECONDS.
fuzz: deps
	@CARGO=$(CARGO) ./scripts/fuzz.sh $(FUZZ_SECONDS)

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Regenerate docs/schema/*.json from the Rust types (review the diff, then commit).
schemas:
	UPDATE_SCHEMAS=1 $(CARGO) test --test wire committed_schemas_match_the_types

# The benchmarks (release build), printed as a table with the targets beside the figures.
bench:
	@./scripts/deps.sh $(PACKAGES) $(BENCH_PACKAGES)
	$(CARGO) build --release -p gst-plugin-continuity --lib -p continuity --bin continuity
	$(CARGO) run --release -p gst-plugin-continuity --example bench
	$(CARGO) run --release -p gst-plugin-continuity --example handoff_bench

# Many simulated devices on one broker node (docs/SCALE.md): mosquitto, then the embedded
# broker; LOADTEST_SIZES, LOADTEST_SECONDS and LOADTEST_SAMPLE change what runs.
loadtest:
	@./scripts/deps.sh $(PACKAGES)
	$(CARGO) build --release -p continuity --bin continuity
	@./scripts/loadtest.sh

# A phone and a TV hand one film back and forth every 1.5 s for SOAK_MINUTES (30): failures,
# latency percentiles and both processes' memory every 50 handoffs (not part of `make test`).
SOAK_MINUTES ?= 30
soak:
	@./scripts/deps.sh $(PACKAGES)
	$(CARGO) build --release -p gst-plugin-continuity --lib -p continuity --bin continuity
	SOAK_MINUTES=$(SOAK_MINUTES) $(CARGO) run --release -p gst-plugin-continuity --example soak
