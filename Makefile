# Every install step the project needs lives here, so a fresh machine (and CI) can run it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := $(CURDIR)/.tools/bin
PYTEST_ARGS ?=
# make test's pytest-xdist workers: more than the 2 cores pay, as many tests wait on servers and subprocesses.
# Tests that share a server or the private Docker Engine stay on one worker (XDIST_GROUPS in tests/conftest.py).
TEST_WORKERS ?= 4

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: run install install-test lint test test-fast

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

## install: the tool with its embedded default store (SeaweedFS); its bytecode is compiled now, as pip does for a
## regular install, because an editable one is compiled on each start where PYTHONDONTWRITEBYTECODE is set
install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'
	$(BIN)/python -m compileall -q runner_cache flows tasks blocks deployments

## run: install, then run setup-runner-cache on the local store; the local Prefect server keeps the run, and the
## last line says where its UI shows it
run: install
	$(BIN)/runner-cache setup
	@$(BIN)/runner-cache server status

## install-test: test dependencies, a pinned helm binary (also linked into the venv, where an installed
## runner-cache looks for it), Debian's Chromium for the UI test, Docker Engine, PostgreSQL 15
install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	bash scripts/get-helm.sh $(TOOLS)
	ln -sf $(TOOLS)/helm $(BIN)/helm
	bash scripts/get-chromium.sh
	bash scripts/get-docker.sh
	bash scripts/get-postgres.sh

## lint: ruff (pyflakes, imports, bugbear, pyupgrade), ruff format, and the layer contracts in .importlinter
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	LINT_IMPORTS=$(abspath $(BIN))/lint-imports bash scripts/lint-imports.sh

## test-fast: lint and the unit tests (no servers, no Prefect API): the loop to run while working, under a minute
test-fast:
	@test -x $(BIN)/pytest || $(MAKE) install-test
	$(MAKE) lint
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

## test: everything, on $(TEST_WORKERS) workers (TEST_WORKERS=0: in this process, one test after another; pytest's
## "no tests collected" exit 5 fails like any other)
test: install-test lint
	PATH="$(TOOLS):$$PATH" $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)
