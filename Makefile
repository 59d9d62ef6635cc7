# The product's commands. Every target builds what it needs from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test-only peer SDKs. Both install a top-level package named `alipay`, so neither enters the venv: each gets
# its own folder, and the tests run it in a subprocess with PYTHONPATH set to that folder.
PEER_SDK     := .peer/python-alipay-sdk/.installed
OFFICIAL_SDK := .peer/alipay-sdk-python/.installed

.PHONY: test lint typecheck unit bench interop clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements-dev.txt
	touch $(STAMP)

$(PEER_SDK): | $(STAMP)
	rm -rf $(@D)
	$(PY) -m pip install -qq --target $(@D) python-alipay-sdk==3.4.0
	touch $@

# ~440 MB of generated modules: --no-compile skips byte-compiling them all (it would more than double the size).
$(OFFICIAL_SDK): | $(STAMP)
	rm -rf $(@D)
	$(PY) -m pip install -qq --no-compile --target $(@D) alipay-sdk-python==3.7.1411
	touch $@

## make test: lint, type-check and every test tier (unit, integration, e2e)
test: lint typecheck $(PEER_SDK)
	$(PY) -m pytest -q -m "not interop" tests

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
interop: $(OFFICIAL_SDK)
	$(PY) -m pytest -q -m interop tests/interop

clean:
	rm -rf $(VENV) .local .peer .pytest_cache .mypy_cache .ruff_cache .hypothesis
