# The product's commands. Every target builds what it needs from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test-only peer SDKs. Both install a top-level package named `alipay`, so neither enters the venv: each gets
# its own folder, and the tests run it in a subprocess with PYTHONPATH set to that folder.
PEER_SDK     := .peer/python-alipay-sdk/.installed
OFFICIAL_SDK := .peer/alipay-sdk-python/.installed
# The browser tier only (make e2e-browser): Playwright's Python driver in .venv (requirements-browser.txt), which
# launches Debian's Chromium (tests/browser/install-chromium.sh); Playwright never downloads a browser here.
BROWSER_STAMP := $(VENV)/.installed-browser

.PHONY: help test test-long test-antom package-check lint typecheck unit e2e e2e-browser run demo bench fuzz interop clean soak

.DEFAULT_GOAL := help

# Tests run in parallel (pytest-xdist, one worker per CPU); each file stays on one worker, so a module's local stack
# is started once. The tiers: `make test` (minutes) and the long ones CI adds (.ci/run).
PYTEST_PARALLEL := -n auto --dist loadfile
QUICK_TIERS := not interop and not browser and not package and not soak and not legacy_stack and not antom_stack and not long_contract

## make help: this list
help:
	@sed -n 's/^## make /  make /p' $(MAKEFILE_LIST)

# `pip install $(1)`, in a terminal with one line per package pip collects (so that the first install, a minute or
# two, is not silent); elsewhere (CI, a log) quiet: only the step lines below and pip's warnings and errors.
# pip's exit status is kept through the filter without pipefail, which /bin/sh may not have.
PIP_INSTALL = if [ -t 1 ]; then \
	  { $(PY) -m pip install --progress-bar off $(1); echo $$? > $(VENV)/.pip-status; } \
	    | sed -un 's/^Collecting \([^ ;]*\).*/      \1/p'; \
	  exit "$$(cat $(VENV)/.pip-status)"; \
	else $(PY) -m pip install -qq $(1); fi
PINNED = $$(cat requirements.txt requirements-dev.txt | grep -c '^[A-Za-z].*==')

$(STAMP): requirements.txt requirements-dev.txt
	@echo "==> [1/3] the virtual environment $(VENV) ($(PYTHON))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] pip itself"
	@$(call PIP_INSTALL,--upgrade pip)
	@echo "==> [3/3] requirements-dev.txt: $(PINNED) pinned packages and what they need (a minute or two the first time)"
	@$(call PIP_INSTALL,-r requirements-dev.txt)
	@touch $(STAMP)
	@echo "==> $(VENV) is ready"

$(PEER_SDK): | $(STAMP)
	rm -rf $(@D)
	$(PY) -m pip install -qq --target $(@D) python-alipay-sdk==3.4.0
	touch $@

# ~440 MB of generated modules: --no-compile skips byte-compiling them all (it would more than double the size).
$(OFFICIAL_SDK): | $(STAMP)
	rm -rf $(@D)
	$(PY) -m pip install -qq --no-compile --target $(@D) alipay-sdk-python==3.7.1411
	touch $@

$(BROWSER_STAMP): requirements-browser.txt $(STAMP)
	$(PY) -m pip install -qq -r requirements-browser.txt
	touch $@

## make test: lint, type-check, unit, integration, fuzz regressions and end to end through an Open Platform stack
test: lint typecheck $(PEER_SDK)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "$(QUICK_TIERS)" tests

## make test-long: the long tiers CI adds: the legacy and Antom stacks end to end, the soaks, the API contract at length
test-long: $(STAMP) $(PEER_SDK)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "legacy_stack or antom_stack or soak or long_contract" tests

## make test-antom: end to end through a local stack of the Antom protocol only (ALIPAY_PROTOCOL=antom)
test-antom: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m antom_stack tests/e2e

## make package-check: build the Lambda package as a deployment does (chalice package); prove it holds only the product
package-check: $(STAMP)
	$(PY) -m pytest -q -s -m package tests/package

lint: $(STAMP)
	$(VENV)/bin/ruff check app.py chalicelib ops devstack sandbox tests $(wildcard bench)

typecheck: $(STAMP)
	$(VENV)/bin/mypy app.py chalicelib ops devstack sandbox bench

unit: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests/unit

e2e: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests/e2e

## make e2e-browser: the web checkout in headless Chromium (installs Debian's chromium and Playwright's driver)
e2e-browser: $(BROWSER_STAMP)
	bash tests/browser/install-chromium.sh
	$(PY) -m pytest -q -m browser tests/browser

## make run: the local stack in the foreground (AWS emulated, API, event-source workers, Alipay sandbox); Ctrl-C stops it
run: $(STAMP)
	$(PY) -m devstack run

## make demo: one payment end to end through a fresh local stack on free ports, then stop it
demo: $(STAMP)
	$(PY) -m devstack demo

## make bench: benchmark figures, each beside a baseline measured in the same run
bench: $(STAMP)
	$(PY) -m bench

## make fuzz: every fuzz target (webhook from raw bytes, client-result parsers, web return page) for >= 100,000 cases
fuzz: $(STAMP)
	$(PY) -m tests.fuzz

## make soak [N=20000] [PROTOCOL=antom]: N notifications through a local stack with injected faults; prints and asserts the figures
N ?= 20000
PROTOCOL ?= openapi
soak: $(STAMP)
	$(PY) -m tests.soak -n $(N) --protocol $(PROTOCOL)

## make interop: cross-check against the official alipay-sdk-python (large; not part of make test)
interop: $(OFFICIAL_SDK)
	$(PY) -m pytest -q -m interop tests/interop

# --- infrastructure (infra/: AWS CDK, Python) ----------------------------------------------------------------------
# Its own venv (infra/.venv: CDK, the Chalice construct, cfn-lint, the SAM translator; ~700 MB, kept out of .venv)
# and the CDK CLI from infra/package-lock.json (infra/node_modules). Node.js comes from the machine.
INFRA_VENV  := infra/.venv
INFRA_PY    := $(INFRA_VENV)/bin/python
INFRA_STAMP := $(INFRA_VENV)/.installed
CDK_STAMP   := infra/node_modules/.installed
# checkov, the security scanner, in a venv of its own: its pins clash with the CDK's and ours.
CHECKOV_VENV  := infra/.checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CDK         := ./node_modules/.bin/cdk
# No telemetry, notices or version checks; jsii runs on Node 20 (past its end of life) without a banner.
CDK_QUIET   := PYTHONDONTWRITEBYTECODE=1 CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
# Checks run with no AWS credentials at all: no profile, no keys, no instance-metadata lookups.
NO_AWS      := env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
               AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
INFRA_STAGES := dev prod
# make deploy STAGE=prod [CONTEXT="-c user_pool_arn=arn:... -c alarm_email=ops@example.com"] [DEPLOY_ARGS=...]
STAGE       ?=
CONTEXT     ?=
DEPLOY_ARGS ?=

# Chalice zips chalicelib/ as it is on disk: no stale bytecode (of modules since moved out) goes into the package.
NO_BYTECODE := find app.py chalicelib -name __pycache__ -prune -exec rm -rf {} +

.PHONY: infra-check deploy infra-clean

$(INFRA_STAMP): infra/requirements.txt
	test -x $(INFRA_PY) || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_PY) -m pip install -qq --upgrade "pip<26.3"
	$(INFRA_PY) -m pip install -qq -r infra/requirements.txt
	touch $(INFRA_STAMP)

$(CHECKOV_STAMP): infra/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -qq --upgrade "pip<26.3"
	$(CHECKOV_VENV)/bin/python -m pip install -qq -r infra/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

$(CDK_STAMP): infra/package.json infra/package-lock.json
	cd infra && npm ci --no-audit --no-fund --loglevel=error
	touch $(CDK_STAMP)

## make infra-check: cdk synth of every deployable stage (offline, no credentials), cfn-lint, checkov, the infra tests
infra-check: $(INFRA_STAMP) $(CDK_STAMP) $(CHECKOV_STAMP)
	$(INFRA_VENV)/bin/ruff check infra
	rm -rf infra/cdk.out infra/chalice.out
	$(NO_BYTECODE)
	cd infra && for stage in $(INFRA_STAGES); do \
	  $(NO_AWS) $(CDK_QUIET) $(CDK) synth -c stage=$$stage --no-notices --no-version-reporting --quiet \
	    -o cdk.out/$$stage || exit 1; \
	done
	$(INFRA_VENV)/bin/cfn-lint infra/cdk.out/*/*.template.json
	# Every finding fails unless suppressed in the CDK code with its reason (infra/stacks/scanner.py).
	$(NO_AWS) BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download \
	  --framework cloudformation $$(for t in infra/cdk.out/*/*.template.json; do printf -- '-f %s ' "$$t"; done)
	cd infra && $(NO_AWS) $(CDK_QUIET) .venv/bin/python -m pytest -q

## make deploy STAGE=prod: synth the stage, bootstrap its account/region (once; idempotent), deploy (needs AWS credentials)
deploy: $(INFRA_STAMP) $(CDK_STAMP)
	@test -n "$(STAGE)" || { echo "usage: make deploy STAGE=prod   (a deployable stage of .chalice/config.json)" >&2; exit 2; }
	rm -rf infra/cdk.out/$(STAGE) infra/chalice.out
	$(NO_BYTECODE)
	cd infra && $(CDK_QUIET) $(CDK) synth -c stage=$(STAGE) $(CONTEXT) --no-notices --quiet -o cdk.out/$(STAGE)
	cd infra && $(CDK_QUIET) $(CDK) bootstrap --app cdk.out/$(STAGE) --no-notices
	cd infra && $(CDK_QUIET) $(CDK) deploy --app cdk.out/$(STAGE) --no-notices \
	  --outputs-file cdk.out/$(STAGE)-outputs.json $(DEPLOY_ARGS)

infra-clean:
	rm -rf $(INFRA_VENV) $(CHECKOV_VENV) infra/node_modules infra/cdk.out infra/chalice.out infra/.pytest_cache

clean: infra-clean

clean:
	rm -rf $(VENV) .local .peer .pytest_cache .mypy_cache .ruff_cache .hypothesis
