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
# Spark's classes, parsed and verified once, for every driver JVM to map (spark.class_archive).
JVM_ARCHIVE := $(CURDIR)/var/jvm/spark-classes.jsa
# The executors' Python: a small venv of what jobs/, store/ and conf/ import, packed for --archives.
EXECUTOR_VENV := $(CURDIR)/.venv-executor
EXECUTOR_ENV := $(CURDIR)/dist/executor-env.tar.gz
VAR := $(CURDIR)/var
RUN_DATE ?= $(shell date -u +%F)
DEMO_INTERACTIONS ?= 300000
DEMO_REDIS_PORT ?= 6399
API_PORT ?= 8000
# The demo's config, laid over conf/recs.yaml: an A/B experiment of ALS against popularity.
DEMO_CONFIG ?= $(CURDIR)/conf/demo.yaml
# The demo publishes to REDIS_URL when it is set, else to a redis-server it starts itself.
DEMO_REDIS_URL := $(if $(REDIS_URL),$(REDIS_URL),redis://127.0.0.1:$(DEMO_REDIS_PORT)/0)
REDIS_HINT := "  Debian/Ubuntu: sudo apt-get install -y redis-server | macOS: brew install redis | or set REDIS_URL=redis://host:port/0"

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
	@command -v redis-server >/dev/null || [ -n "$(REDIS_URL)" ] || { \
	  echo "error: redis-server is needed (the tests and the demo start their own)."; echo $(REDIS_HINT); exit 1; }
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
	@$(VENV_PY) -m tools.bundle $(BUNDLE) >/dev/null

.PHONY: jvm-archive
jvm-archive: $(JVM_ARCHIVE) ## Build the class archive Spark drivers map at start (about 45 s, once per install)

# Rebuilt when the virtualenv or the builder changes. Drivers use it only while its stamp matches
# their Java and PySpark (after a Java upgrade: delete it and make it again). The archive only
# saves time, so a failed build is a warning: the demo and the tests run without it.
$(JVM_ARCHIVE): $(VENV_STAMP) tools/jvm_archive.py
	@echo "==> building the JVM class archive of Spark's classes (once per install; make jvm-archive)"
	@RECS__SPARK__CLASS_ARCHIVE=$@ $(VENV_PY) -m tools.jvm_archive || \
	  echo "warning: no JVM class archive; Spark drivers start without it (about 3 s slower each)"

.PHONY: executor-env
executor-env: $(EXECUTOR_ENV) ## Pack the executors' virtualenv for spark-submit --archives (dist/executor-env.tar.gz)

# Packed from a venv of its own so that executors get only what they import, at the versions of
# requirements.lock. Its python is a link to this machine's interpreter: workers need the same
# Python at the same path. Test folders are left out: the archive is unpacked for every app.
$(EXECUTOR_ENV): $(VENV_STAMP) requirements-executor.in requirements.lock
	@echo "==> packing the executors' Python environment into dist/executor-env.tar.gz"
	@rm -rf $(EXECUTOR_VENV) && $(VENV_PY) -m venv --without-pip $(EXECUTOR_VENV)
	@$(VENV)/bin/pip --python $(EXECUTOR_VENV)/bin/python install --quiet --disable-pip-version-check \
	  -c requirements.lock -r requirements-executor.in 2> >(grep -v "^WARNING: Location" >&2)
	@mkdir -p $(@D) && $(VENV)/bin/venv-pack --quiet --force --prefix $(EXECUTOR_VENV) --format tar.gz \
	  --exclude 'lib/python*/site-packages/*/tests/*' --output $@.tmp && chmod 644 $@.tmp && mv $@.tmp $@

.PHONY: demo
demo: venv bundle jvm-archive demo-redis ## Generate data, run the nightly DAG once, publish, serve, show the results
	@mkdir -p $(VAR)/logs
	@echo "==> generating $(DEMO_INTERACTIONS) interactions (plus 9 bad rows) into var/data"
	@$(VENV_PY) -m tools.generate_data --out $(VAR)/data --interactions $(DEMO_INTERACTIONS) \
	  --end-date $(RUN_DATE) --bad-rows 9 > $(VAR)/logs/generate.log 2>&1 || { tail -n 40 $(VAR)/logs/generate.log; exit 1; }
	@echo "==> preparing Airflow metadata (SQLite in var/airflow)"
	@airflow db migrate > $(VAR)/logs/airflow-db.log 2>&1 || { tail -n 40 $(VAR)/logs/airflow-db.log; exit 1; }
	@echo "==> running DAG nightly_recommendations for $(RUN_DATE) (full log: var/logs/demo-dag.log)"
	@RECS_CONFIG=$(DEMO_CONFIG) REDIS_URL=$(DEMO_REDIS_URL) RECS__SCHEDULE__RETRIES=0 \
	  airflow dags test nightly_recommendations $(RUN_DATE) 2>&1 \
	  | tee $(VAR)/logs/demo-dag.log \
	  | { grep --line-buffered -oE "\[recs\.[a-z_]+\] [^[]*|Task failed with exception|DagRun failed" || true; } \
	  | sed -u -e 's/^\[recs\.[a-z_]*\] /    /' -e 's/ *$$//'
	@RECS_CONFIG=$(DEMO_CONFIG) $(VENV_PY) -m tools.run_summary --run-date $(RUN_DATE)
	@$(MAKE) --no-print-directory api-up
	@echo "==> the API answers (granian on port $(API_PORT), Redis $(DEMO_REDIS_URL)):"
	@$(VENV_PY) -m tools.api_examples http://127.0.0.1:$(API_PORT) \
	  $$($(VENV_PY) -c 'import pyarrow.dataset as d, pyarrow.compute as c; t = d.dataset("$(VAR)/runs/$(RUN_DATE)/recommendations").to_table(columns=["user_id"]); print(c.min(t["user_id"]))') ranking
	@echo "==> API and Redis keep running in the background; stop them with: make stop"

.PHONY: demo-redis
demo-redis: ## Start the demo's own redis-server unless REDIS_URL is set
	@mkdir -p $(VAR)/redis
	@if [ -n "$(REDIS_URL)" ]; then echo "==> using Redis at REDIS_URL"; \
	elif [ -f $(VAR)/redis/redis.pid ] && kill -0 $$(cat $(VAR)/redis/redis.pid) 2>/dev/null; then \
	  echo "==> demo redis-server already running on port $(DEMO_REDIS_PORT)"; \
	elif ! command -v redis-server >/dev/null; then \
	  echo "error: no Redis for the demo: redis-server is not installed and REDIS_URL is not set."; echo $(REDIS_HINT); exit 1; \
	else echo "==> starting redis-server on port $(DEMO_REDIS_PORT) (append-only file in var/redis, fsync always)"; \
	  redis-server --port $(DEMO_REDIS_PORT) --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --daemonize yes \
	    --dir $(VAR)/redis --pidfile $(VAR)/redis/redis.pid --logfile $(VAR)/redis/redis.log || { \
	    echo "error: redis-server did not start on port $(DEMO_REDIS_PORT) (in use? set DEMO_REDIS_PORT=...)"; exit 1; }; \
	  for i in $$(seq 50); do $(VENV_PY) -c 'import redis; redis.Redis(port=$(DEMO_REDIS_PORT)).ping()' 2>/dev/null && break; \
	    sleep 0.1; done; \
	fi

.PHONY: api-up
api-up: $(VENV_STAMP) ## Start the API under granian in the background (used by the demo)
	@mkdir -p $(VAR)/logs
	@if [ -f $(VAR)/api.pid ] && kill -0 $$(cat $(VAR)/api.pid) 2>/dev/null; then kill $$(cat $(VAR)/api.pid); \
	  for i in $$(seq 150); do kill -0 $$(cat $(VAR)/api.pid 2>/dev/null) 2>/dev/null || break; sleep 0.2; done; fi
	@RECS_CONFIG=$(DEMO_CONFIG) RECS__STORE__URL=$(DEMO_REDIS_URL) RECS__API__BIND=127.0.0.1:$(API_PORT) \
	  nohup $(VENV_PY) -m serving.server --pid-file $(VAR)/api.pid >> $(VAR)/logs/api.log 2>&1 < /dev/null &
	@for i in $$(seq 100); do \
	  $(VENV_PY) -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:$(API_PORT)/healthz", timeout=1)' 2>/dev/null && exit 0; \
	  sleep 0.2; done; echo "error: the API did not start; see var/logs/api.log"; exit 1

.PHONY: stop
stop: ## Stop the demo's API and redis-server
	@if [ -f $(VAR)/api.pid ] && kill -0 $$(cat $(VAR)/api.pid) 2>/dev/null; then kill $$(cat $(VAR)/api.pid) && echo "stopped the API"; fi
	@rm -f $(VAR)/api.pid
	@if [ -f $(VAR)/redis/redis.pid ] && kill -0 $$(cat $(VAR)/redis/redis.pid) 2>/dev/null; then \
	  kill $$(cat $(VAR)/redis/redis.pid) && echo "stopped the demo redis-server"; fi

.PHONY: serve
serve: venv ## Run the API under granian in the foreground (the api section of the config, REDIS_URL)
	@$(VENV_PY) -m serving.server

.PHONY: dev
dev: venv ## Flask's debug server with reload, for development only
	@FLASK_DEBUG=1 $(VENV)/bin/flask --app 'serving:create_app()' run --port $(API_PORT)

.PHONY: run
run: venv bundle ## Run the whole pipeline without Airflow, publish included (python -m jobs.pipeline)
	@$(VENV_PY) -m jobs.pipeline --run-date $(RUN_DATE)

.PHONY: movielens
movielens: venv ## MovieLens 100K (from PyPI) through every stage but publish, with the shipped defaults
	@$(VENV_PY) -m tools.movielens --out $(VAR)/data/ml-100k 2> >(grep -v "^WARNING: Location" >&2)
	@echo "==> running the pipeline on it without Redis (conf/movielens.yaml; log: var/logs/movielens.log)"
	@mkdir -p $(VAR)/logs
	@RECS__EVENTS__ENABLED=false $(VENV_PY) -m jobs.pipeline --config conf/movielens.yaml --run-date $(RUN_DATE) \
	  --stages export_events,prepare,tune,train,evaluate,recommend,similar,finalize > $(VAR)/logs/movielens.log 2>&1 \
	  || { tail -n 40 $(VAR)/logs/movielens.log; exit 1; }
	@$(VENV_PY) -m tools.run_summary --config conf/movielens.yaml --run-date $(RUN_DATE) --users 0

.PHONY: browser
browser: ## Install Debian's chromium and chromium-driver for the dashboard test (root or sudo)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "==> installing chromium and chromium-driver for the dashboard test"; \
	  if [ "$$(id -u)" = 0 ]; then APT="apt-get"; elif sudo -n true 2>/dev/null; then APT="sudo -n apt-get"; \
	  else echo "error: the dashboard test needs chromium and chromium-driver:"; \
	    echo "  Debian/Ubuntu: sudo apt-get install -y chromium chromium-driver"; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive $$APT install -y -q chromium chromium-driver >/dev/null 2>&1 || { \
	    $$APT update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$APT install -y -q chromium chromium-driver >/dev/null; }; }

.PHONY: test
test: venv bundle executor-env browser jvm-archive ## Run the whole test suite (starts its own redis-server; installs chromium if missing)
	@$(VENV_PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-faults
test-faults: venv bundle ## Heavy fault scenarios: slow and idle clients, fuzzing, prune under load (docs/reliability.md)
	@$(VENV_PY) -m pytest -m faults $(PYTEST_ARGS)

SOAK_MINUTES ?= 10

.PHONY: soak
soak: venv ## Ten minutes of steady load with a publish and a prune inside: PASS/FAIL, figures in var/soak/
	@$(VENV_PY) -m tools.soak --minutes $(SOAK_MINUTES)

.PHONY: test-spark-cluster
test-spark-cluster: venv bundle executor-env ## The nightly DAG on a 2-worker Spark standalone cluster on loopback
	@$(VENV_PY) -m pytest -m spark_cluster tests/test_spark_cluster.py $(PYTEST_ARGS)

.PHONY: bench
bench: venv bundle ## Benchmarks: stage times at 1M, top-N engines at 1M and 20M shape, publish rate, API req/s (bench/results/)
	@$(VENV_PY) -m bench $(BENCH_ARGS)

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
	@rm -rf $(VAR) $(CURDIR)/dist $(EXECUTOR_VENV)
