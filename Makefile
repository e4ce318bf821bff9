# SalesPulse: `make demo` runs the pipeline on generated data; `make test` runs lint, types and every test;
# `make test-fast` lint, types and the unit tests (no PostgreSQL, no Airflow runs, no shared data).
# Both build the virtualenv from the pinned files on first use and are safe to run again.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3
DEMO_CUSTOMERS ?= 3000
DEMO_MONTHS ?= 4
# Test worker processes (pytest-xdist; tests are handed out as workers free up). 0 runs in this process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

.PHONY: setup demo test test-fast lint typecheck pytest pytest-fast bench bench-e2e bench-reference lock clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/salespulse demo --customers $(DEMO_CUSTOMERS) --months $(DEMO_MONTHS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test: lint typecheck pytest

# Tests that need PostgreSQL, real DAG runs or ../shared/data, or run the whole chain of steps, are marked
# (tests/conftest.py, pyproject.toml) and left out here.
pytest-fast: setup
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not postgres and not airflow and not real_data and not chain"

test-fast: lint typecheck pytest-fast

bench: setup bench-reference
	$(BIN)/python -m bench.run

# The whole chain for one as-of date, stage by stage: 100k and 1M customers on DuckDB, 100k on PostgreSQL
# (127.0.0.1:5432). The generated CRMs are cached in .data/bench-e2e/.
bench-e2e: setup
	$(BIN)/python -m bench.e2e --customers 100000 1000000

# The benchmark's own environment for statsforecast (AutoETS, the outside reference): it pins pandas < 3.
BENCH_STAMP := .venv-bench/.installed
$(BENCH_STAMP): bench/requirements-reference.txt
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	.venv-bench/bin/pip install --quiet -r bench/requirements-reference.txt
	touch $@

bench-reference: $(BENCH_STAMP)

# Re-resolve the pinned direct dependencies in a scratch virtualenv and write the full lock.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet "pip==$(PIP_VERSION)"
	.lock-venv/bin/pip install --quiet -r requirements.txt -r requirements-dev.txt
	{ echo "# Full lock of every installed distribution; regenerate with 'make lock'."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .venv-bench .airflow .data .pytest_cache .mypy_cache .ruff_cache
