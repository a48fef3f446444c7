# The two commands: `make run` serves the API on an embedded PostgreSQL; `make test` runs the
# suite. Both create .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000

.PHONY: install run dev test lint bench package package-test template-lint mutate clean

install: $(STAMP)

# pip below 26.3: chalice 1.34 drives pip to build the Lambda package and declares pip<26.3.
$(STAMP): requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip<26.3"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The API on 127.0.0.1:$(PORT) with the embedded PostgreSQL, the simulator and the scheduler;
# Ctrl-C (or SIGTERM/SIGHUP) stops all of it. LOG_FORMAT=json prints Lambda's JSON lines.
LOG_FORMAT ?= human

run: install
	@$(BIN)/python -m devtools.run_local --port $(PORT) --log-format $(LOG_FORMAT)

# As `make run`, restarted when a source file changes (never for the data directory).
dev: install
	@$(BIN)/python -m devtools.run_local --port $(PORT) --log-format $(LOG_FORMAT) --reload

# Line coverage of chalicelib/ is printed and must stay at or above 90%. The browser tests
# (tests/browser) need Debian's chromium; without it they are skipped, and said so here.
CHROMIUM ?= /usr/bin/chromium

test: install
	@test -x "$(CHROMIUM)" || echo "browser tests skipped: no chromium at $(CHROMIUM) (apt-get install chromium)"
	MDW_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install package
	$(BIN)/python -m bench $(BENCH_ARGS)

# The deployable CloudFormation template (API, functions, queue, DLQ, bucket, alarms) in
# build/package. Chalice sets the functions' runtime to the Python it runs on and downloads that
# version's Lambda wheels, so the package is built in its own virtualenv on Python 3.12+.
PACKAGE_PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; break; }; done)
PACKAGE_VENV := .venv-package
PACKAGE_STAMP := $(PACKAGE_VENV)/.installed-stamp

$(PACKAGE_STAMP): requirements.txt
	@test -n "$(PACKAGE_PYTHON)" || { echo "make package needs Python 3.12 or newer (PACKAGE_PYTHON=...)"; exit 1; }
	$(PACKAGE_PYTHON) -m venv $(PACKAGE_VENV)
	$(PACKAGE_VENV)/bin/python -m pip install --quiet --upgrade "pip<26.3"
	$(PACKAGE_VENV)/bin/python -m pip install --quiet -r requirements.txt chalice==1.34.0
	touch $(PACKAGE_STAMP)

package: $(PACKAGE_STAMP)
	rm -rf build/package
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(PACKAGE_VENV)/bin/chalice package \
		--stage $(or $(STAGE),prod) --merge-template deploy/resources.json build/package
	$(PACKAGE_VENV)/bin/python devtools/slim_package.py build/package/deployment.zip

clean:
	rm -rf $(VENV) $(PACKAGE_VENV) $(CHECKOV_VENV) $(MUTATE_VENV) build .pytest_cache .mypy_cache .ruff_cache .coverage .hypothesis

# The packaged functions run as Lambda runs them: each Handler imported by name in a fresh
# Python 3.12 whose path holds only the unzipped deployment.zip and the runtime's boto3.
LAMBDA_RUNTIME_DIR := build/lambda-runtime
LAMBDA_RUNTIME_STAMP := $(LAMBDA_RUNTIME_DIR)/.installed-stamp

$(LAMBDA_RUNTIME_STAMP): requirements-dev.txt
	@test -n "$(PACKAGE_PYTHON)" || { echo "make package-test needs Python 3.12 or newer (PACKAGE_PYTHON=...)"; exit 1; }
	rm -rf $(LAMBDA_RUNTIME_DIR)
	$(PACKAGE_PYTHON) -m pip install --quiet --target $(LAMBDA_RUNTIME_DIR) $$(grep -E '^boto3==' requirements-dev.txt)
	touch $(LAMBDA_RUNTIME_STAMP)

package-test: install package $(LAMBDA_RUNTIME_STAMP)
	MDW_PACKAGE_DIR=build/package LAMBDA_PYTHON=$(PACKAGE_PYTHON) \
		LAMBDA_RUNTIME_DIR=$(abspath $(LAMBDA_RUNTIME_DIR)) \
		$(BIN)/python -m pytest tests/package $(PYTEST_ARGS)

# The packaged template through cfn-lint and checkov, each on the SAM template and on the
# CloudFormation the SAM transform makes of it (offline); any finding fails. checkov has its
# own virtualenv: its pinned dependencies would clash with the test tools'.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

$(CHECKOV_STAMP):
	@test -n "$(PACKAGE_PYTHON)" || { echo "make template-lint needs Python 3.12 or newer (PACKAGE_PYTHON=...)"; exit 1; }
	$(PACKAGE_PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

template-lint: install package $(CHECKOV_STAMP)
	$(BIN)/python -m devtools.template_lint build/package --checkov $(CHECKOV_VENV)/bin/checkov

# Mutation testing of one module against its own tests (docs/TESTING.md); minutes per module,
# so not part of CI: make mutate MODULE=chalicelib/keys/tokens.py
MUTATE_VENV := .venv-mutate
MUTATE_STAMP := $(MUTATE_VENV)/.installed-stamp

$(MUTATE_STAMP):
	$(PYTHON) -m venv $(MUTATE_VENV)
	$(MUTATE_VENV)/bin/python -m pip install --quiet cosmic-ray==8.7.0
	touch $(MUTATE_STAMP)

mutate: install $(MUTATE_STAMP)
	@test -n "$(MODULE)" || { echo "usage: make mutate MODULE=chalicelib/keys/tokens.py"; exit 2; }
	$(BIN)/python -m devtools.mutate --cosmic-ray $(MUTATE_VENV)/bin $(MODULE)
