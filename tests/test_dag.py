"""The nightly DAG: it imports cleanly and lightly, follows the house policy, takes its tasks and
edges from the stage table, and does not retry a job that refuses."""

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jobs.stages import GATE, PIPELINE
from tools.processes import ROOT, project_env


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
    monkeypatch_module.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["nightly_recommendations"]


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == ["nightly_recommendations"]


def test_dag_policy(dag, base_config):
    schedule = base_config.schedule
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md and "Nightly recommendations" in dag.doc_md
    assert set(dag.tags) >= {"recommendations"}
    assert dag.schedule == schedule.cron
    for task in dag.tasks:
        assert task.retries == schedule.retries >= 1
        assert task.retry_exponential_backoff > 0
        assert task.execution_timeout == timedelta(minutes=schedule.execution_timeout_minutes)


def test_one_task_per_stage_submitting_its_job_through_the_configured_connection(dag, base_config):
    from orchestration.spark_job import SparkJobOperator

    assert [task.task_id for task in dag.tasks] == [*PIPELINE.names, "held"]
    for stage in PIPELINE.stages:
        if stage.kind == GATE:
            continue
        task = dag.get_task(stage.name)
        assert isinstance(task, SparkJobOperator)
        assert task._conn_id == base_config.schedule.spark_conn_id
        assert task.application == str(ROOT / stage.script) and (ROOT / stage.script).exists()
        assert task.application_args[-2:] == ["--run-date", "{{ ds }}"]


def test_task_edges_follow_the_stage_table(dag):
    downstream = {task.task_id: set(task.downstream_task_ids) for task in dag.tasks}
    assert downstream == {
        "export_events": {"prepare"},
        "prepare": {"tune"},
        "tune": {"train", "evaluate"},
        "train": {"recommend", "similar"},
        "evaluate": {"finalize"},
        "recommend": {"finalize"},
        "similar": {"finalize"},
        "finalize": {"quality_gate"},
        "quality_gate": {"publish", "held"},
        "publish": set(),
        "held": set(),
    }
    from_table = {(up, down) for up, downs in downstream.items() for down in downs if down != "held"}
    assert sorted(PIPELINE.dag_edges()) == sorted(from_table)


def test_importing_the_dag_module_loads_no_pyspark_pandas_or_redis():
    dag_file = str(ROOT / "dags" / "nightly_recommendations.py")
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('nightly', {dag_file!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=project_env(), cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)  # fmt: skip
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {"airflow", "conf", "jobs"} <= loaded, "the probe really imported the DAG"
    assert not loaded & {"pyspark", "pandas", "redis", "py4j", "flask"}


def spark_job(tmp_path, application: str, *args: str):
    from orchestration.spark_job import SparkJobOperator

    return SparkJobOperator(
        task_id="probe", conn_id="spark_recs", application=application, application_args=list(args),
        py_files=None, conf={"spark.ui.enabled": "false"},
    )  # fmt: skip


def test_a_job_that_refuses_fails_without_retry_and_a_crash_is_retried(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_RECS", '{"conn_type": "spark", "host": "local[1]"}')
    isolated = project_env(
        RECS__INPUT__PATH=str(tmp_path / "absent"),
        RECS__PATHS__RUNS_ROOT=str(tmp_path / "runs"),
        RECS__SPARK__CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
    )
    for name, value in isolated.items():
        monkeypatch.setenv(name, value)
    refusing = spark_job(tmp_path, str(ROOT / "jobs" / "prepare.py"), "--run-date", "2026-11-29")
    with pytest.raises(AirflowFailException, match="refused"):
        refusing.execute(context={})
    assert refusing.exit_status() == 2

    crash = tmp_path / "crash.py"
    crash.write_text("raise RuntimeError('a crash is worth retrying')\n")
    crashing = spark_job(tmp_path, str(crash))
    with pytest.raises(AirflowException) as failed:
        crashing.execute(context={})
    assert not isinstance(failed.value, AirflowFailException)
    assert crashing.exit_status() == 1


HELD_RUN_PROBE = """
import json, sys
import pendulum
from airflow.dag_processing.dagbag import DagBag

dag = DagBag(dag_folder=sys.argv[1]).dags["nightly_recommendations"]
gate_onwards = dag.partial_subset(task_ids=["quality_gate"], include_downstream=True, include_upstream=False)
run = gate_onwards.test(logical_date=pendulum.parse(sys.argv[2]))
print("STATES " + json.dumps({ti.task_id: str(ti.state) for ti in run.get_task_instances()}))
"""


def test_a_dag_run_of_a_held_run_branches_to_held_and_skips_publish(tmp_path):
    """A real Airflow run of the gate and what follows it, on a run folder whose manifest holds it."""
    run_dir = tmp_path / "runs" / "2026-11-29"
    run_dir.mkdir(parents=True)
    gate = {"passed": False, "reason": "NDCG@k 0.0500 is below popularity's 0.1000 less 0% (0.1000)", "checks": []}
    (run_dir / "manifest.json").write_text(json.dumps({"gate": gate}))
    env = project_env(
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        RECS__PATHS__RUNS_ROOT=str(tmp_path / "runs"),
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, cwd=ROOT, capture_output=True, timeout=300, check=True)
    result = subprocess.run([sys.executable, "-c", HELD_RUN_PROBE, str(ROOT / "dags"), "2026-11-29"], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    states = [line for line in result.stdout.splitlines() if line.startswith("STATES ")]
    assert states, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(states[0].removeprefix("STATES ")) == {
        "quality_gate": "success", "held": "failed", "publish": "skipped"
    }  # fmt: skip
    assert "held by the quality gate: NDCG@k 0.0500 is below popularity's" in result.stdout + result.stderr
    assert "--override-gate" in result.stdout + result.stderr
