#!/usr/bin/env bash
# The image's entry points: api (default), airflow, generate. Settings come from the project
# config (RECS_CONFIG, RECS__* variables), as everywhere else.
set -euo pipefail
cd /app
case "${1:-api}" in
  api)
    exec python -m serving.server
    ;;
  airflow)
    # Airflow standalone: scheduler, API server and a SQLite database under var/airflow. The
    # bundle the Spark jobs get through --py-files carries conf/, so rebuild it from the
    # mounted one: otherwise spark-submit would put the image's copy ahead of it.
    python -m tools.bundle dist/recs_jobs.zip >/dev/null
    airflow db migrate
    exec airflow standalone
    ;;
  generate)
    # Sample data for the DAG, once: skipped when it is there already.
    if [ ! -f var/data/_generated.json ]; then
      python -m tools.generate_data --out var/data --interactions "${INTERACTIONS:-300000}" \
        --end-date "$(date -u +%F)" --bad-rows 9
    fi
    ;;
  *)
    exec "$@"
    ;;
esac
