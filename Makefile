# Nightly recommender. Quick start: `make demo`, then `make test`.
# System prerequisites: Python 3.11+, Java 17+ and redis-server; everything else is installed
# into .venv from requirements.lock.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
BUNDLE := $(CURDIR)/dist/recs_jobs.zip
VAR := $(CURDIR)/var
RUN_DATE ?= $(shell date -u +%F)
DEMO_INTERACTIONS ?= 300000

export PATH := $(VENV)/bin:$(PATH)
export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME := $(VAR)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__LOGGING__LOGGING_LEVEL := INFO
export AIRFLOW_CONN_SPARK_RECS ?= {"conn_type": "spark", "host": "local[*]"}

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: prereqs
prereqs: ## Check Python, Java and redis-server, and say how to install what is missing
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "error: Python 3.11+ is needed as '$(PYTHON)' (set PYTHON=/path/to/python3.11)."; exit 1; }
	@command -v java >/dev/null || { echo "error: Java 17+ is needed and 'java' is not on PATH."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; \
	  echo "  macOS:         brew install openjdk@17"; exit 1; }
	@major=$$(java -version 2>&1 | awk -F'"' '/version/ {split($$2, v, "."); print (v[1] == 1 ? v[2] : v[1])}'); \
	  [ "$${major:-0}" -ge 17 ] || { echo "error: Java 17+ is needed, found Java $$major."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless"; exit 1; }
	@command -v redis-server >/dev/null || { echo "error: redis-server is needed (tests start their own)."; \
	  echo "  Debian/Ubuntu: sudo apt-get install -y redis-server"; \
	  echo "  macOS:         brew install redis"; exit 1; }
	@ls /usr/lib/*/libblas.so.3 /usr/lib/libblas.so.3 >/dev/null 2>&1 || \
	  echo "note: no native BLAS found; ALS runs on Java BLAS. For about 1.6x faster training: sudo apt-get install -y libopenblas0-pthread liblapack3"

$(VENV_STAMP): requirements.lock
	@echo "==> creating .venv and installing requirements.lock (first run takes about 2 minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock 2> >(grep -v "^WARNING: Location" >&2)
	@$(VENV_PY) -c 'import pyspark, airflow, flask, redis; print("    pyspark", pyspark.__version__, "| airflow", airflow.__version__)'
	@touch $@

.PHONY: venv
venv: prereqs $(VENV_STAMP) ## Create .venv with the pinned dependencies

.PHONY: bundle
bundle: $(VENV_STAMP) ## Zip the project's code for spark-submit --py-files
	@$(VENV_PY) -m jobs.bundle $(BUNDLE) >/dev/null

.PHONY: demo
demo: venv bundle ## Generate data, run the nightly DAG once, show the results
	@mkdir -p $(VAR)/logs
	@echo "==> generating $(DEMO_INTERACTIONS) interactions (plus 9 bad rows) into var/data"
	@$(VENV_PY) -m jobs.generate_data --out $(VAR)/data --interactions $(DEMO_INTERACTIONS) \
	  --end-date $(RUN_DATE) --bad-rows 9 > $(VAR)/logs/generate.log 2>&1 || { tail -n 40 $(VAR)/logs/generate.log; exit 1; }
	@echo "==> preparing Airflow metadata (SQLite in var/airflow)"
	@airflow db migrate > $(VAR)/logs/airflow-db.log 2>&1 || { tail -n 40 $(VAR)/logs/airflow-db.log; exit 1; }
	@echo "==> running DAG nightly_recommendations for $(RUN_DATE) (full log: var/logs/demo-dag.log)"
	@RECS__SCHEDULE__RETRIES=0 airflow dags test nightly_recommendations $(RUN_DATE) 2>&1 \
	  | tee $(VAR)/logs/demo-dag.log \
	  | { grep --line-buffered -oE "\[recs\.[a-z_]+\] [^[]*|Task failed with exception|DagRun failed" || true; } \
	  | sed -u -e 's/^\[recs\.[a-z_]*\] /    /' -e 's/ *$$//'
	@$(VENV_PY) -m jobs.run_summary --run-date $(RUN_DATE)

.PHONY: run
run: venv ## Run the whole pipeline without Airflow (python -m jobs.pipeline)
	@$(VENV_PY) -m jobs.pipeline --run-date $(RUN_DATE)

.PHONY: test
test: venv bundle ## Run the whole test suite (starts its own redis-server)
	@$(VENV_PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(VENV_STAMP) ## Static checks (ruff)
	@$(VENV)/bin/ruff check .

.PHONY: lock
lock: ## Re-resolve requirements.in into requirements.lock
	@rm -rf $(VAR)/lock-venv && $(PYTHON) -m venv $(VAR)/lock-venv
	@$(VAR)/lock-venv/bin/pip install --quiet -r requirements.in
	@$(VAR)/lock-venv/bin/pip freeze --exclude pip --exclude setuptools --exclude wheel > requirements.lock
	@echo "requirements.lock updated; commit it with requirements.in"

.PHONY: clean
clean: ## Remove generated data, runs and logs (keeps .venv)
	@rm -rf $(VAR) $(CURDIR)/dist
