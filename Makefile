# The commands of the README, and what they need.
#   make measure   the main job: the minimal hop limit of every topology (netns backend)
#   make test      the whole test suite, as CI runs it
#   make check     the contributor's fast tier: fmt, clippy, every test that needs
#                  neither root nor Docker (installs nothing)
# measure and test install the Debian packages they need, idempotently; all share one cargo
# profile and one target directory outside the clone, so a second run is warm.

export CARGO_TARGET_DIR ?= /var/cache/imds-harness/target
# The Debian package lists, one package a line, shared with the Earthfile's +tools.
DEB_PACKAGES := $(shell grep -v '^#' packages/debian.txt)
# `make bench` only: the load generator and the reference server the mock is compared with.
BENCH_PACKAGES := $(shell grep -v '^#' packages/debian-bench.txt)
BIN := $(CARGO_TARGET_DIR)/debug

.PHONY: deb deb-tools deps pydeps bench-deps build tests-build fmt lint check test measure bench bench-backends bench-fleet bench-relay client-fixtures cleanup dist images mock-image

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Python's junitparser, the JUnit reader the --junit test checks the report with; cfn-lint,
# whose IAM policy grammar and linter check the printed SCP and Config rule.
pydeps:
	@python3 -c 'import junitparser' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore junitparser
	@python3 -c 'import cfnlint' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore cfn-lint

# Debian's nginx package starts a system-wide nginx on port 80 unless policy-rc.d
# forbids it; the benchmark runs its own, so this install forbids it (and a systemd
# host does not enable it either). A policy-rc.d already there is left as it is.
bench-deps: deps
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the benchmark:" $$missing; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d; \
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || exit 1; \
		if echo " $$missing " | grep -q ' nginx ' && [ -d /run/systemd/system ]; then systemctl disable -q nginx; fi; \
	fi

# apt and cargo at once: nothing cargo builds needs a Debian package (no -sys crate links
# a system library), and on a fresh machine each takes minutes. apt's output is shown when
# it is done; an interrupted build waits for apt rather than leave dpkg half-way.
# $(call beside_apt,COMMAND)
define beside_apt
log=$$(mktemp); \
$(MAKE) --no-print-directory deps > $$log 2>&1 & apt=$$!; \
trap 'wait $$apt; rm -f $$log' INT TERM; \
$(1); built=$$?; \
wait $$apt; installed=$$?; cat $$log; rm -f $$log; \
if [ $$installed -ne 0 ]; then echo "make deps failed (exit $$installed)"; exit $$installed; fi; \
exit $$built
endef

build:
	@$(call beside_apt,cargo build --workspace --bins)

# What `make test` runs: the libraries and binaries as unit tests, the integration tests
# and the benchmarks (for their lints), then the binaries themselves (`cargo test` builds
# only those its package's own tests run: imds-harness's are run by the root package's).
# The tests first, not `cargo build` then `cargo test`: while aws-sdk-ec2 is compiled (a
# minute and a half on one core, on imds-shim's longest path), the other core builds the
# tests' dependencies. The binaries then take seconds: the tests' build has made every
# crate they link (`--tests`: with the features the tests' dependencies unify, as for
# `cargo test`, so nothing is built twice).
tests-build:
	@$(call beside_apt,cargo test --workspace --no-run --lib --bins --tests --benches && cargo build --workspace --bins --tests)

# A test that cannot run here (no root, no Docker, no AWS CLI) appends itself to SKIPPED
# (tests/support/require.rs; under CI=true it fails instead). The list is cleared before
# the tests and printed after them, pass or fail.
SKIPPED := $(BIN)/skipped-tests.txt
define report_skipped
	n=$$(cat $(SKIPPED) 2>/dev/null | wc -l); \
	if [ "$$n" -gt 0 ]; then \
		echo; echo "!!!!! skipped: $$n test(s) did not run here (they fail under CI=true) !!!!!"; \
		sed 's/^/!!!!!   /' $(SKIPPED); echo; \
	else echo "skipped: 0"; fi
endef

# Clippy's lints ride on the builds of `make build`, `check` and `test`: clippy-driver
# (clippy's own rustc, as `cargo clippy` runs it) compiles the workspace's crates, so each
# dependency is built once, not a second time in check mode for `cargo clippy` (2.5 min of a
# fresh machine's build). Warnings, the lints' included, fail those builds. Cargo keeps
# their artifacts apart from a plain `cargo build`'s (the wrapper is part of a unit's hash).
# CLIPPY_ARGS is how `cargo clippy` hands its arguments to clippy-driver.
# (MAKEFLAGS is left out: under `make -j` rustc would look for a jobserver it was not given.)
CLIPPY_DRIVER := $(shell env -u MAKEFLAGS -u MFLAGS rustc --print sysroot)/bin/clippy-driver
build tests-build check test: export RUSTC_WORKSPACE_WRAPPER := $(CLIPPY_DRIVER)
build tests-build check test: export CLIPPY_ARGS := -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# `make test` builds the workspace's crates without incremental compilation: its runs are
# mostly from a new clone, where the incremental caches are only written (a cold build of
# those crates: 65 s incremental, 45 s not). `make check`, a contributor's, keeps it.
tests-build test: export CARGO_INCREMENTAL := 0

fmt:
	cargo fmt --all --check

# clippy on its own, as a contributor's editor runs it; `make check` and `make test` lint
# through their builds, the benchmarks' included (`cargo test --no-run --benches`).
lint: fmt
	cargo clippy --workspace --all-targets -- -D warnings

# The fast tier: the `check` profile of .config/nextest.toml (every test that needs
# neither root nor Docker; IMDS_TIER=fast makes one that does fail, naming the filter to
# put it in), each test in its own process, in parallel (nextest runs no doctests: cargo
# test does). The binaries are built first: the end-to-end tests run them.
check: fmt
	@command -v cargo-nextest >/dev/null || { echo "make check runs cargo-nextest: cargo install --locked cargo-nextest"; exit 2; }
	cargo build --workspace --bins
	cargo test --workspace --no-run --benches
	@rm -f $(SKIPPED)
	@status=0; \
	IMDS_TIER=fast IMDS_SKIPPED_FILE=$(SKIPPED) cargo nextest run --workspace --lib --bins --tests --profile check || status=$$?; \
	cargo test --workspace --doc || status=$$?; \
	$(report_skipped); \
	exit $$status

# Everything, the fast tier included, with cargo test: the slow tier's tests rely on
# running the tests of one binary in one process (they serialise their cleanups with
# in-process locks), which cargo test gives and nextest's process per test does not.
# The tests that use the docker backend's images (IMAGE_TESTS) run one binary at a time,
# after the others: their simulated instances take both cores (a load of 15 to 25), and
# beside them the real clients' one-second time-outs expire (run with nextest, binaries
# side by side, netns_physics's and the systemd package test's clients failed:
# docs/benchmarks.md, "The test suite"). The others, mostly waiting (clients' time-outs,
# back-offs, deadlines; the CPU 10 to 70 % busy), run in two lanes at once: TEST_LANE's
# binaries one after another beside the rest one after another (its output shown when it
# is done); each test checks only what its own runs made (tests/support/runs.rs).
#
# What a fresh machine makes for the tests (cargo-deb's release build and the docker
# backend's images, each minutes of CPU) is made at the lowest CPU priority (nice 19)
# beside work that does not need it: cargo-deb beside the build, the images beside the
# tests that need none. Each takes the CPU the rest leaves idle (the single-core stretch
# of the build, the clients' time-outs), not the CPU the rest needs. (The package test's
# systemd host image, built so beside the docker sweeps, had its build's container killed
# in one run of one, exit 137, cause not found: it is built in its test, as before.)
# Every binary runs when one fails (--no-fail-fast): CI shows every failure at once.
# check-leftovers runs either way.
# (Every cargo run here selects the whole workspace, `--test` naming the binaries: with
# fewer packages selected, cargo unifies other features and builds crates again.)
IMAGE_TESTS := docker_backend docker_faults docker_images fence mock_container package readme_examples
# Every other test binary of the workspace (a test directory's main.rs is one).
OTHER_TESTS := $(filter-out $(IMAGE_TESTS),$(basename $(notdir $(wildcard tests/*.rs */tests/*.rs))) \
	$(notdir $(patsubst %/main.rs,%,$(wildcard tests/*/main.rs))))
# The second lane: the relay's (and the clients') binaries, about half of the others' time.
TEST_LANE := clients relay relay_hostile_network relay_metrics relay_scoped
TEST_LANE_LOG := $(CARGO_TARGET_DIR)/test-lane.log
IMAGES_LOG := $(CARGO_TARGET_DIR)/images-build.log
DEB_TOOLS_LOG := $(CARGO_TARGET_DIR)/deb-tools.log
test:
	@mkdir -p $(CARGO_TARGET_DIR); rm -f $(SKIPPED); status=0; images=; lane=; \
	nice -n 19 $(MAKE) --no-print-directory deb-tools > $(DEB_TOOLS_LOG) 2>&1 & debtools=$$!; \
	trap 'kill $$debtools $$images $$lane 2>/dev/null; wait; exit 130' INT TERM; \
	$(MAKE) --no-print-directory fmt || status=$$?; \
	if $(MAKE) --no-print-directory -j2 tests-build pydeps; then \
		if docker info >/dev/null 2>&1; then \
			nice -n 19 $(BIN)/imds-harness images > $(IMAGES_LOG) 2>&1 & images=$$!; \
		fi; \
		IMDS_SKIPPED_FILE=$(SKIPPED) cargo test --workspace --no-fail-fast $(TEST_LANE:%=--test %) \
			> $(TEST_LANE_LOG) 2>&1 & lane=$$!; \
		IMDS_SKIPPED_FILE=$(SKIPPED) cargo test --workspace --no-fail-fast --lib --bins \
			$(patsubst %,--test %,$(filter-out $(TEST_LANE),$(OTHER_TESTS))) || status=$$?; \
		wait $$lane || status=1; cat $(TEST_LANE_LOG); \
		if [ -n "$$images" ]; then \
			if wait $$images; then grep -m1 ' images: ' $(IMAGES_LOG); \
			else echo "imds-harness images failed:"; cat $(IMAGES_LOG); status=1; fi; \
		fi; \
		wait $$debtools || { echo "make deb-tools failed:"; cat $(DEB_TOOLS_LOG); status=1; }; \
		IMDS_SKIPPED_FILE=$(SKIPPED) cargo test --workspace --no-fail-fast $(IMAGE_TESTS:%=--test %) || status=$$?; \
	else kill $$debtools 2>/dev/null; wait; status=1; fi; \
	cargo test --workspace --doc || status=$$?; \
	$(report_skipped); \
	tests/check-leftovers || status=1; \
	exit $$status

measure: build
	$(BIN)/imds-harness measure $(ARGS)

# The mock against nginx, driven by wrk (root): ARGS="SECONDS PAIRS", default "4 5".
bench: bench-deps
	cargo bench -p imds-mock --bench mock -- $(ARGS)

# The backends' benchmarks (root; the docker one needs the engine): medians of RUNS.
RUNS ?= 3
bench-backends: build
	cargo bench --profile dev --bench netns -- $(RUNS)
	cargo bench --profile dev --bench docker -- $(RUNS)

# What each client prints and how long it takes at hop limit one too low (root): the
# fixtures in fixtures/clients/, from the real clients at a real leaf; RUNS runs each.
client-fixtures: build
	cargo bench --profile dev --bench clients -- $(RUNS) --write

# imds-shim audit of 5,000 instances in the mock EC2, calm and 30 % throttled: medians of RUNS.
bench-fleet: build
	cargo bench --profile dev --bench fleet -- $(RUNS)

# imds-shim relay against a direct IMDS fetch, from the deepest preset (root, wrk): medians of RUNS.
bench-relay: bench-deps build
	cargo bench --profile dev --bench relay -- $(RUNS)

cleanup: build
	$(BIN)/imds-harness cleanup

# imds-shim as shipped: static (glibc, static-pie), size-optimised, stripped.
dist:
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist -p imds-shim --target x86_64-unknown-linux-gnu
	@ls -l $(CARGO_TARGET_DIR)/x86_64-unknown-linux-gnu/dist/imds-shim

# The Debian package (docs/packaging.md): the release binary, its man pages and completions,
# the units and /etc/imds-shim/config.toml, made by cargo-deb (installed if missing) into
# $(CARGO_TARGET_DIR)/debian/. The test suite packages the dev build instead.
deb-tools:
	@command -v cargo-deb >/dev/null || env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS cargo install --locked cargo-deb

deb: deb-tools
	cargo build --release -p imds-shim --bin imds-shim
	shim/debian/build release
	@ls -l $(CARGO_TARGET_DIR)/debian/*.deb

images: build
	$(BIN)/imds-harness images

# The mock's image from a static, size-optimised imds-harness (`imds-harness images`
# makes it from the debug build otherwise); tagged imds-harness/mock:latest.
STATIC_HARNESS := $(CARGO_TARGET_DIR)/x86_64-unknown-linux-gnu/dist/imds-harness
mock-image: build
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist -p imds-harness --bin imds-harness --target x86_64-unknown-linux-gnu
	IMDS_HARNESS=$(STATIC_HARNESS) $(BIN)/imds-harness images
