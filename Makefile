# The product's commands. Every target builds what it needs from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck unit bench interop clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $(STAMP)

## make test: lint, type-check and every test tier (unit, integration, e2e)
test: lint typecheck
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check app.py chalicelib tests $(wildcard bench)

typecheck: $(STAMP)
	$(VENV)/bin/mypy app.py chalicelib

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

## make bench: benchmark figures, each beside a baseline measured in the same run
bench: $(STAMP)
	$(PY) -m bench

## make interop: cross-check against the official alipay-sdk-python (large; not part of make test)
interop: $(STAMP)
	$(PY) -m tests.peers.install official
	$(PY) -m pytest -q -m interop tests/interop

clean:
	rm -rf $(VENV) .local .peer .pytest_cache .mypy_cache .ruff_cache .hypothesis
