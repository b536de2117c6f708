# Everything a newcomer needs: `make demo` and `make test` set themselves up (a virtual
# environment in .venv with the pinned dependencies of requirements.lock).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
SDK3 ?= .sdk3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit unit-only bench endurance lock clean chromium screenshots

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "watcher needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/watcher demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check watcher tests benchmarks
	$(BIN)/ruff format --check watcher tests benchmarks
	$(BIN)/lint-imports  # the layers of docs/architecture.md

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) sdk3 chromium
	WATCHER_SDK3=$(SDK3) $(BIN)/pytest

# The status page's browser tests drive the system's Chromium through Playwright (never a
# browser of Playwright's own): Debian's package, installed here when missing and root may;
# otherwise those tests skip and say so (WATCHER_CHROMIUM names another binary).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || [ -n "$$WATCHER_CHROMIUM" ] \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	       && { apt-get install -y -qq chromium >/dev/null 2>&1 \
	            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } \
	  || echo "no Chromium (apt-get install chromium): the status page's browser tests will skip"

# PNGs of the status page's main pages for the README (the daemon, the simulator and a
# receiver on loopback, a few jobs, a dead letter and a silence).
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.e2e.screenshots docs/screenshots

# The unit tests alone (no end-to-end processes): what .ci/run also runs on each newer
# interpreter, e.g. `make unit-only PYTHON=python3.13 VENV=.venv-3.13 SDK3=.sdk3-3.13`.
unit-only: $(STAMP) sdk3
	WATCHER_SDK3=$(SDK3) $(BIN)/pytest -q tests/unit

# mistralai 3.x for tests/unit/devtools/simulator/test_sdk_batch_contract.py, in its own directory: the venv pins
# 1.x for the fine-tuning contract. Pinned whole in tests/sdk3.lock; changing it reinstalls.
.PHONY: sdk3
sdk3: $(SDK3)/.installed

$(SDK3)/.installed: tests/sdk3.lock $(STAMP)
	rm -rf $(SDK3)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --target $(SDK3) -r tests/sdk3.lock
	@touch $(SDK3)/.installed

# Every figure of the README's benchmark table (about 45 minutes on 2 cores; each script
# also runs alone, with --help for its options).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.poll_cost
	$(BIN)/python -m benchmarks.latency
	$(BIN)/python -m benchmarks.adaptive
	$(BIN)/python -m benchmarks.scale
	$(BIN)/python -m benchmarks.delivery
	$(BIN)/python -m benchmarks.startup
	$(BIN)/python -m benchmarks.takeover
	$(BIN)/python -m benchmarks.stream_latency
	$(BIN)/python -m benchmarks.workflows_poll_cost
	$(BIN)/python -m benchmarks.page_render

# The endurance suite at the issue's full figures (50 kills, 500 transitions, 30 simulated
# minutes of API faults, 10 of sink outage): many minutes. `make test` runs a short version.
endurance: $(STAMP)
	WATCHER_ENDURANCE=long $(BIN)/pytest -m endurance tests/endurance

# Re-pin after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^watcher' > requirements.lock

clean:
	rm -rf .venv .venv-3.* .sdk3 .sdk3-3.* .pytest_cache .mypy_cache .ruff_cache
