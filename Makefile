# `make demo` and `make test` set up their own virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
PY_DIRS := sources pipelines klaviyo_emulator bench tests

.PHONY: setup demo test lint typecheck bench clean dagster-demo airflow-smoke

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required, found " + sys.version.split()[0]'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/klaviyo-segments demo

lint: setup
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)

typecheck: setup
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/emulator_throughput.py
	$(BIN)/python bench/incremental.py
	$(BIN)/python bench/ceiling.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/accounts.py
	$(BIN)/python bench/resume.py
	$(BIN)/python bench/daily.py
	$(BIN)/python bench/page_work.py

# Many accounts: `dagster dev` on three emulated accounts (docs/accounts.md).
dagster-demo: setup
	$(BIN)/python -m pip install --quiet -e ".[dagster]"
	$(BIN)/klaviyo-accounts dagster-demo

# The Airflow DAG through dag.test(), in a virtual environment of its own (not in `make test`).
AIRFLOW_VENV ?= .demo/airflow-venv
AIRFLOW_HOME_DIR := $(CURDIR)/.demo/airflow-home
airflow-smoke:
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -e ".[airflow]"
	mkdir -p $(AIRFLOW_HOME_DIR)
	AIRFLOW_HOME=$(AIRFLOW_HOME_DIR) AIRFLOW__CORE__LOAD_EXAMPLES=False $(AIRFLOW_VENV)/bin/airflow db migrate >/dev/null
	AIRFLOW_HOME=$(AIRFLOW_HOME_DIR) AIRFLOW__CORE__LOAD_EXAMPLES=False $(AIRFLOW_VENV)/bin/python tests/accounts/airflow_smoke.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
