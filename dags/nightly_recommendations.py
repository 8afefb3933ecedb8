"""
### Nightly recommendations

Builds the day's top-N recommendations for the logical date (`ds`) with Spark ALS and
publishes them to Redis. The tasks and their order come from the stage table,
`jobs/stages.py`: one task per stage, each one `spark-submit` of that stage's job.

Every task submits through the Airflow connection named in `schedule.spark_conn_id` (default
`spark_recs`). Its host is the Spark master: `local[*]` on a laptop, `spark://head:7077`,
`yarn` or `k8s://https://...` on a cluster. Nothing else changes.

A job that **refuses** (exit status 2: bad config, bad input above the quarantine threshold,
an incomplete run, a publish the store refuses) fails its task without retries; its log says
why in one line. A crash is retried with exponential backoff.

`quality_gate` branches on the decision finalize wrote into the manifest: to `publish`, or,
when the run's NDCG@k is too far below popularity's or below the current published run's, to
`held`, which fails with the reason (not retried). Publish a held run on purpose with
`python -m jobs.publish --run-date <ds> --override-gate`.

`publish` loads Redis from `store.url` (or `REDIS_URL`) and refuses a run older than the one
being served; roll back with `python -m store.admin rollback`.

Settings come from `conf/recs.yaml` with the file in `RECS_CONFIG` laid over it, and
`RECS__SECTION__KEY` environment variables; every task gets the same `--config`. A re-run of a
date replaces that date's run folder only.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.sdk import DAG

from conf import load_config
from jobs.session import DRIVER_JAVA_OPTIONS, driver_java_options
from jobs.stages import GATE, PIPELINE
from jobs.storage import absolute_uri
from orchestration.spark_job import SparkJobOperator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = os.environ.get("RECS_CONFIG")
BUNDLE_PATH = os.environ.get("RECS_BUNDLE", str(PROJECT_ROOT / "dist" / "recs_jobs.zip"))
LOG4J_OPTION = f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT / 'conf' / 'log4j2.properties'}"

cfg = load_config(CONFIG_PATH)
schedule = cfg.schedule
RUN_DIR = absolute_uri(cfg.paths.runs_root).rstrip("/") + "/{{ ds }}"
config_args = ["--config", CONFIG_PATH] if CONFIG_PATH else []
HELD_TASK = "held"


def follow_gate(run_dir: str, publish_task: str) -> str:
    """Branch on the quality gate's decision in the run's manifest."""
    from jobs.quality_gate import branch

    return branch(run_dir, publish_task, HELD_TASK)


def fail_held(run_dir: str, run_date: str) -> None:
    """Fail with the reason the gate held the run, and how to publish it anyway."""
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.quality_gate import held_message, read_manifest_directly

    raise AirflowFailException(held_message(run_date, read_manifest_directly(run_dir)["gate"]))


def spark_task(stage) -> SparkJobOperator:
    """One stage's spark-submit."""
    # The log format and the class archive join the driver's Java options of the config.
    driver_options = driver_java_options(cfg.spark, LOG4J_OPTION)
    return SparkJobOperator(
        task_id=stage.name,
        doc_md=f"`{stage.script}`: {stage.summary}",
        conn_id=schedule.spark_conn_id,
        application=str(PROJECT_ROOT / stage.script),
        py_files=BUNDLE_PATH,
        application_args=[*config_args, "--run-date", "{{ ds }}"],
        name=f"recs-{stage.name}-{{{{ ds }}}}",
        conf={**cfg.spark.conf_strings(), DRIVER_JAVA_OPTIONS: driver_options},
        python_env=cfg.spark.python_env,
    )


def gate_task(stage) -> BranchPythonOperator:
    """The quality gate: a branch to the stage after it (publish) or to ``held``."""
    (publish_task,) = [name for name in PIPELINE.names if stage.name in PIPELINE.direct_inputs(name)]
    return BranchPythonOperator(
        task_id=stage.name,
        doc_md=stage.summary,
        python_callable=follow_gate,
        op_kwargs={"run_dir": RUN_DIR, "publish_task": publish_task},
    )


with DAG(
    dag_id="nightly_recommendations",
    doc_md=__doc__,
    schedule=schedule.cron,
    start_date=pendulum.datetime(
        schedule.start_date.year, schedule.start_date.month, schedule.start_date.day, tz="UTC"
    ),
    catchup=False,
    max_active_runs=1,
    tags=["recommendations", "spark"],
    default_args={
        "owner": "recs",
        "retries": schedule.retries,
        "retry_delay": timedelta(minutes=schedule.retry_delay_minutes),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=schedule.max_retry_delay_minutes),
        "execution_timeout": timedelta(minutes=schedule.execution_timeout_minutes),
    },
) as dag:
    tasks = {stage.name: gate_task(stage) if stage.kind == GATE else spark_task(stage) for stage in PIPELINE.stages}
    for upstream, downstream in PIPELINE.dag_edges():
        tasks[upstream] >> tasks[downstream]
    for stage in PIPELINE.stages:
        if stage.kind == GATE:
            tasks[stage.name] >> PythonOperator(
                task_id=HELD_TASK,
                doc_md="The quality gate held the run: fails with the reason (AirflowFailException: not retried).",
                python_callable=fail_held,
                op_kwargs={"run_dir": RUN_DIR, "run_date": "{{ ds }}"},
            )
