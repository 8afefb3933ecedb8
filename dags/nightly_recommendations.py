"""
### Nightly recommendations

Builds the day's top-N recommendations for the logical date (`ds`) with Spark ALS.

| task | job | writes |
|---|---|---|
| `prepare` | `jobs/prepare.py` | cleaned interactions, id maps, quarantine |
| `train` | `jobs/train.py` | ALS model and factors |
| `evaluate` | `jobs/evaluate.py` | holdout metrics, ALS vs popularity |
| `recommend` | `jobs/recommend.py` | `recommendations/` and `popular/` Parquet |
| `finalize` | `jobs/finalize.py` | `manifest.json`, the completion marker |
| `publish` | `jobs/publish.py` | the run in Redis, made current in one atomic step |

Every task is one `spark-submit` through the Airflow connection named in
`schedule.spark_conn_id` (default `spark_recs`). Its host is the Spark master: `local[*]` on a
laptop, `spark://head:7077`, `yarn` or `k8s://https://...` on a cluster. Nothing else changes.

`publish` loads Redis from `publish.redis_url` (or `REDIS_URL`) and refuses a run older than the
one being served; roll back with `python -m serving.admin rollback`.

Settings come from `conf/pipeline.yaml` (or the file in `RECS_CONFIG`), and any of them can be
overridden with `RECS__SECTION__KEY` environment variables. A re-run of a date replaces that
date's run folder only.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG

from conf import load_config
from jobs.session import conf_text

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = os.environ.get("RECS_CONFIG", str(PROJECT_ROOT / "conf" / "pipeline.yaml"))
BUNDLE_PATH = os.environ.get("RECS_BUNDLE", str(PROJECT_ROOT / "dist" / "recs_jobs.zip"))
LOG4J_OPTION = f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT / 'conf' / 'log4j2.properties'}"

cfg = load_config(CONFIG_PATH)
schedule_cfg = cfg["schedule"]


def spark_job(job: str) -> SparkSubmitOperator:
    """A task that spark-submits ``jobs/<job>.py`` for the run's logical date."""
    return SparkSubmitOperator(
        task_id=job,
        conn_id=schedule_cfg["spark_conn_id"],
        application=str(PROJECT_ROOT / "jobs" / f"{job}.py"),
        py_files=BUNDLE_PATH,
        application_args=["--config", CONFIG_PATH, "--run-date", "{{ ds }}"],
        name=f"recs-{job}-{{{{ ds }}}}",
        conf={
            **{key: conf_text(value) for key, value in (cfg["spark"].get("conf") or {}).items()},
            "spark.driver.extraJavaOptions": LOG4J_OPTION,
        },
    )


with DAG(
    dag_id="nightly_recommendations",
    doc_md=__doc__,
    schedule=schedule_cfg["cron"],
    start_date=pendulum.parse(str(schedule_cfg["start_date"]), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["recommendations", "spark"],
    default_args={
        "owner": "recs",
        "retries": int(schedule_cfg["retries"]),
        "retry_delay": timedelta(minutes=float(schedule_cfg["retry_delay_minutes"])),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=float(schedule_cfg["max_retry_delay_minutes"])),
        "execution_timeout": timedelta(minutes=float(schedule_cfg["execution_timeout_minutes"])),
    },
) as dag:
    prepare, train, evaluate, recommend, finalize, publish = (
        spark_job(job) for job in ("prepare", "train", "evaluate", "recommend", "finalize", "publish")
    )
    prepare >> [train, evaluate]
    train >> recommend
    [recommend, evaluate] >> finalize >> publish
