# Everything a newcomer needs: `make demo` and `make test` set themselves up (a virtual
# environment in .venv with the hash-checked pins of requirements-dev.lock, installed by uv,
# which itself comes from PyPI through pip, pinned in requirements-bootstrap.lock).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
SDK3 ?= .sdk3
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
# uv installs into the venv's interpreter, never one it downloads.
UV_PIP := $(UV) pip --quiet
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo test lint typecheck package unit unit-only bench endurance lock lock-upgrade clean chromium screenshots

# The venv and the bootstrap tools (uv, and setuptools for the editable install).
$(UV): requirements-bootstrap.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "watcher needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-bootstrap.lock
	@touch $(UV)

# Exactly the dev lock (sync removes what it no longer lists), compiled to bytecode as pip
# would (else, under PYTHONDONTWRITEBYTECODE, every process compiles its imports again: the
# demo's processes start seconds late), then watcher itself, editable.
$(STAMP): $(UV) pyproject.toml requirements-dev.lock
	$(UV_PIP) sync --python $(BIN)/python --require-hashes --compile-bytecode requirements-dev.lock
	$(UV_PIP) install --python $(BIN)/python --no-deps --no-build-isolation -e .
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

unit: $(STAMP) sdk3 promtool chromium
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
unit-only: $(STAMP) sdk3 promtool
	WATCHER_SDK3=$(SDK3) $(BIN)/pytest -q tests/unit

# mistralai 3.x for tests/unit/devtools/simulator/test_sdk_batch_contract.py, in its own directory: the venv pins
# 1.x for the fine-tuning contract. Pinned whole, with hashes, in tests/sdk3.lock (make lock
# resolves it from tests/sdk3.in); changing it reinstalls.
# promtool for the alerting rules' checks and unit tests (tests/unit/test_observability.py):
# the one on PATH, else extracted from Debian's prometheus package into the venv (apt-get
# download: no root, no Prometheus server installed or started). Where neither works, those
# tests are skipped and say why.
.PHONY: promtool
promtool: $(BIN)/promtool

$(BIN)/promtool: | $(STAMP)
	@if command -v promtool >/dev/null 2>&1; then ln -sf "$$(command -v promtool)" $@; \
	elif command -v apt-get >/dev/null 2>&1 && tmp=$$(mktemp -d) \
		&& (cd $$tmp && apt-get download -q prometheus >/dev/null 2>&1) \
		&& dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root; then \
		cp $$tmp/root/usr/bin/promtool $@ && rm -rf $$tmp && echo "make: promtool from Debian's prometheus package"; \
	else echo "make: no promtool (Debian: apt-get install prometheus): its tests are skipped"; fi

.PHONY: sdk3
sdk3: $(SDK3)/.installed

$(SDK3)/.installed: tests/sdk3.lock $(STAMP)
	rm -rf $(SDK3)
	$(UV_PIP) install --python $(BIN)/python --no-deps --require-hashes --compile-bytecode \
		--target $(SDK3) -r tests/sdk3.lock
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

# The sdist and the wheel in dist/, their metadata checked as PyPI would (a few seconds).
# make test does the same in tests/unit/test_packaging.py, and installs the wheel in a fresh
# venv.
package: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist . >/dev/null
	$(BIN)/twine check --strict dist/*

# Re-resolve the locks from pyproject.toml (after changing or merging dependencies): every
# pin still allowed is kept, what is new or no longer fits is resolved again; hashes for
# every platform, markers for Python 3.11 and newer; the runtime lock takes the dev lock's
# versions (what the tests ran is what ships). `make lock-upgrade`: newest everything.
# After a merge conflict in a lock, take either side (git checkout --theirs FILE) and rerun.
LOCK := $(UV_PIP) compile --universal --python-version 3.11 --generate-hashes \
	--no-header --annotation-style line $(LOCK_FLAGS)
lock:
	test -x $(UV) || $(MAKE) $(UV)  # not rebuilt from a lock that may be the one to redo
	$(LOCK) pyproject.toml --all-extras -o requirements-dev.lock
	$(LOCK) pyproject.toml --extra postgres -c requirements-dev.lock -o requirements.lock
	sed -n 's/^\(uv\|setuptools\)==\([^ ]*\).*/\1==\2/p' requirements-dev.lock \
		| $(LOCK) - -o requirements-bootstrap.lock
	$(LOCK) tests/sdk3.in -o tests/sdk3.lock

lock-upgrade:
	$(MAKE) lock LOCK_FLAGS=--upgrade

clean:
	rm -rf .venv .venv-3.* .sdk3 .sdk3-3.* .pytest_cache .mypy_cache .ruff_cache dist build
