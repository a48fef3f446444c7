# The two commands: `make run` serves the API on an embedded PostgreSQL; `make test` runs the
# suite. Both create .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000

.PHONY: install run test lint bench package clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: install
	$(BIN)/python -m devtools.run_local --port $(PORT)

# Line coverage of chalicelib/ is printed and must stay at or above 90%.
test: install
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# The deployable CloudFormation template (API, functions, queue, DLQ, bucket, alarms) in build/.
package: install
	rm -rf build/package
	$(BIN)/chalice package --stage $(or $(STAGE),prod) --merge-template deploy/resources.json build/package

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
