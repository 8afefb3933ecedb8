"""The nightly DAG: it imports cleanly, follows the house policy, and wires its tasks right."""

from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
    monkeypatch_module.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["nightly_recommendations"]


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dags) == ["nightly_recommendations"]


def test_dag_policy(dag, base_config):
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md and "Nightly recommendations" in dag.doc_md
    assert set(dag.tags) >= {"recommendations"}
    assert dag.schedule == base_config["schedule"]["cron"]
    for task in dag.tasks:
        assert task.retries == base_config["schedule"]["retries"] >= 1
        assert task.retry_exponential_backoff > 0
        assert task.execution_timeout == timedelta(minutes=base_config["schedule"]["execution_timeout_minutes"])


def test_tasks_submit_the_jobs_through_the_configured_connection(dag, base_config):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    for task in dag.tasks:
        assert isinstance(task, SparkSubmitOperator)
        assert task._conn_id == base_config["schedule"]["spark_conn_id"]
        assert Path(task.application) == ROOT / "jobs" / f"{task.task_id}.py"
        assert Path(task.application).exists()
        assert task.application_args[-2:] == ["--run-date", "{{ ds }}"]


def test_task_edges(dag):
    downstream = {task.task_id: set(task.downstream_task_ids) for task in dag.tasks}
    assert downstream == {
        "prepare": {"train", "evaluate"},
        "train": {"recommend"},
        "evaluate": {"finalize"},
        "recommend": {"finalize"},
        "finalize": {"publish"},
        "publish": set(),
    }


def test_dag_file_keeps_heavy_imports_out_of_module_level():
    source = (ROOT / "dags" / "nightly_recommendations.py").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_level if any(mod in line for mod in ("pyspark", "pandas", "redis", "Variable"))]
