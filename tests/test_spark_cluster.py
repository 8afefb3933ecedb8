"""The same jobs on a real cluster: a Spark standalone master and two workers (1 core, 1g each)
on loopback, whose machine Python has none of the project's packages. The executors get their
Python from the packed virtualenv (`make executor-env`, spark-submit --archives) and the
project's code from --py-files only. The nightly DAG runs against the cluster with nothing
changed but the Airflow connection's host and spark.python_env, and its lists are compared
with a local run of the same input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jobs.stages import GATE, PIPELINE
from tools import generate_data
from tools.bundle import bundle
from tools.generate_data import GeneratorParams
from tools.processes import ROOT, SparkStandaloneCluster, project_env
from tools.run_reading import recommendation_rows

RUN_DATE = "2026-11-29"
TOP_N = 10
PARAMS = GeneratorParams(users=300, items=200, interactions=12000, categories=6, seed=11, days=30, end_date=RUN_DATE)
EXECUTOR_ENV = ROOT / "dist" / "executor-env.tar.gz"
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# What the executors import, as pip names (requirements-executor.in) -> import names.
EXECUTOR_MODULES = {"pandas": "pandas", "numpy": "numpy", "pyarrow": "pyarrow", "pydantic": "pydantic",
                    "redis": "redis", "pyyaml": "yaml"}  # fmt: skip
SPARK_STAGES = [stage.name for stage in PIPELINE.stages if stage.kind != GATE]
# The local reference run builds the run folder; publishing it is the cluster run's job.
LOCAL_STAGES = [*PIPELINE.build_stages, "finalize"]


def on_cluster(test):
    """Mark a test that needs the standalone cluster."""
    return pytest.mark.spark_cluster(pytest.mark.slow(test))


def test_the_operator_ships_the_packed_env_to_executors_and_keeps_the_drivers_python():
    from orchestration.spark_job import SparkJobOperator

    shipped = SparkJobOperator(task_id="shipped", conn_id="spark_recs", application="job.py",
                               conf={"spark.ui.enabled": "false"}, python_env="dist/executor-env.tar.gz")  # fmt: skip
    # A relative path is resolved against the working folder, as every path of the config is.
    assert shipped._archives == f"{Path.cwd() / 'dist' / 'executor-env.tar.gz'}#environment"
    assert shipped.conf == {"spark.ui.enabled": "false", "spark.pyspark.python": "./environment/bin/python",
                            "spark.pyspark.driver.python": sys.executable}  # fmt: skip
    plain = SparkJobOperator(task_id="plain", conn_id="spark_recs", application="job.py", conf={"a": "b"})
    assert plain._archives is None and plain.conf == {"a": "b"}


def worker_machine_env(bare_python: Path) -> dict[str, str]:
    """A worker machine's environment: python3 is one without packages, nothing of the project
    on PYTHONPATH; java and the shell tools stay reachable."""
    kept = {name: os.environ[name] for name in ("HOME", "LANG", "JAVA_HOME", "TMPDIR") if name in os.environ}
    java_bin = str(Path(shutil.which("java")).parent)
    path = os.pathsep.join([str(bare_python.parent), java_bin, "/usr/local/bin", "/usr/bin", "/bin"])
    return {**kept, "PATH": path, "PYSPARK_PYTHON": str(bare_python)}


def driver_env(**extra: str) -> dict[str, str]:
    """An Airflow worker's environment (the project's venv and code), on loopback. The caller's
    PYSPARK_PYTHON goes: the tests' local session sets one, which executors would then run."""
    env = project_env(SPARK_LOCAL_IP="127.0.0.1", **extra)
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        env.pop(name, None)
    return env


def start_logged(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start a command with its output in ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def exit_status(process: subprocess.Popen, timeout: int) -> int:
    """Wait for a started command; one still running after ``timeout`` seconds is killed."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def must_have_succeeded(status: int, command: list[str], log: Path) -> None:
    """Fail the test with the tail of a command's log when it failed."""
    if status != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"{' '.join(command)} exited {status}; log tail:\n{tail}", pytrace=False)


def must_succeed(command: list[str], env: dict[str, str], log: Path, cwd: Path, timeout: int) -> None:
    """Run a command; fail the test with the tail of its log when it fails."""
    must_have_succeeded(exit_status(start_logged(command, env, log, cwd), timeout), command, log)


@pytest.fixture(scope="module")
def executor_env() -> Path:
    if not EXECUTOR_ENV.exists():
        pytest.fail(f"{EXECUTOR_ENV} is missing: build it with `make executor-env`", pytrace=False)
    return EXECUTOR_ENV


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """The workers' own python3: a virtualenv with nothing installed."""
    venv = tmp_path_factory.mktemp("worker-python") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, bare_python):
    cluster = SparkStandaloneCluster(tmp_path_factory.mktemp("spark-cluster"), worker_machine_env(bare_python))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        # Each application's executors unpacked the environment (about 290 MB each); their logs stay.
        for unpacked in cluster.workdir.glob("worker-*/app-*/*/environment"):
            shutil.rmtree(unpacked, ignore_errors=True)


PROBE = """
import json, sys
from conf.schema import SparkSection
from jobs.session import build_spark_session

modules = json.loads(sys.argv[4])

def imports(_):
    import importlib, importlib.util, sys
    versions = {name: importlib.import_module(name).__version__ for name in modules}
    yield {"prefix": sys.prefix, "versions": versions, "project_code": importlib.util.find_spec("jobs") is not None}

spark_cfg = SparkSection(master=sys.argv[1], checkpoint_dir=sys.argv[2], python_env=sys.argv[3] or None,
                         conf={"spark.ui.enabled": False, "spark.task.maxFailures": 1, "spark.driver.memory": "512m",
                               "spark.cores.max": 1})
spark = build_spark_session(spark_cfg, "recs-probe")
print("PROBE " + json.dumps(spark.sparkContext.parallelize(range(2), 2).mapPartitions(imports).collect()))
spark.stop()
"""


@pytest.fixture(scope="module")
def probes(cluster, executor_env, tmp_path_factory) -> dict[str, tuple[int, str]]:
    """A tiny job importing the executors' packages on the executors, built by jobs.session as
    `python -m` jobs are, run without and with the packed env at once (one core each):
    {"bare" or "packed": (exit status, output)}."""
    tmp = tmp_path_factory.mktemp("probes")
    (tmp / "probe.py").write_text(PROBE)
    modules = json.dumps(list(EXECUTOR_MODULES.values()))
    commands = {
        name: [sys.executable, str(tmp / "probe.py"), cluster.url, str(tmp / "checkpoints"), python_env, modules]
        for name, python_env in (("bare", ""), ("packed", str(executor_env)))
    }
    logs = {name: tmp / f"{name}.log" for name in commands}
    started = {name: start_logged(command, driver_env(), logs[name], tmp) for name, command in commands.items()}
    statuses = {name: exit_status(process, timeout=300) for name, process in started.items()}
    return {name: (status, logs[name].read_text()) for name, status in statuses.items()}


@on_cluster
def test_without_the_packed_env_a_job_importing_pandas_fails_on_the_executors(probes, bare_python):
    bare = subprocess.run([str(bare_python), "-c", "import pandas"], capture_output=True, text=True, timeout=60)
    assert "No module named 'pandas'" in bare.stderr, "the workers' python3 must lack the packages"
    status, output = probes["bare"]
    assert status != 0, output[-3000:]
    assert "ModuleNotFoundError: No module named 'pandas'" in output, output[-3000:]


@on_cluster
def test_with_the_packed_env_executors_run_its_python_with_the_pinned_packages(probes):
    status, output = probes["packed"]
    assert status == 0, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("PROBE ")]
    lock = (ROOT / "requirements.lock").read_text().lower().split()
    pinned = dict(line.split("==") for line in lock if "==" in line)
    expected = {module: pinned[name] for name, module in EXECUTOR_MODULES.items()}
    for executor in json.loads(line.removeprefix("PROBE ")):
        assert executor["prefix"].endswith("/environment"), executor
        assert executor["versions"] == expected
        assert executor["project_code"] is False, "executors reach the project's code only through --py-files"


def run_settings(tmp: Path, redis_url: str, runs: str, key_prefix: str) -> dict[str, str]:
    """The config both runs share (a small model, a short tune), with their own runs folder and keys."""
    return {
        "RECS__STORE__URL": redis_url,
        "RECS__STORE__KEY_PREFIX": key_prefix,
        "RECS__INPUT__PATH": str(tmp / "data" / "interactions"),
        "RECS__ITEMS__PATH": str(tmp / "data" / "items"),
        "RECS__PATHS__RUNS_ROOT": str(tmp / runs),
        "RECS__SPARK__CHECKPOINT_DIR": str(tmp / f"{runs}-checkpoints"),
        # Keys of spark.conf keep their case. Executors have 1g (the workers' memory), the driver as much.
        "RECS__SPARK__CONF__spark.driver.memory": "1g",
        "RECS__SPARK__CONF__spark.ui.enabled": "false",
        # Fewer, larger tasks (one per core): each costs more on a cluster than in local mode.
        "RECS__SPARK__CONF__spark.sql.shuffle.partitions": "2",
        # With one core per executor, waiting for the executor holding a cached block only delays.
        "RECS__SPARK__CONF__spark.locality.wait": "0s",
        # Every task of the DAG starts new JVMs that live for seconds: the C2 compiler and G1's
        # threads cost more CPU than they save (about a fifth of the run on 2 cores). Results
        # do not change: Java's floating point is strict.
        "RECS__SPARK__CONF__spark.driver.extraJavaOptions": JVM_OPTIONS,
        "RECS__SPARK__CONF__spark.executor.extraJavaOptions": JVM_OPTIONS,
        "RECS__TRAIN__NUM_USER_BLOCKS": "2",
        "RECS__TRAIN__NUM_ITEM_BLOCKS": "2",
        "RECS__TRAIN__RANK": "8",
        "RECS__TRAIN__MAX_ITER": "6",  # past checkpoint_interval (5): executors write checkpoints too
        "RECS__TUNE__TRIALS": "2",
        "RECS__RECOMMEND__TOP_N": str(TOP_N),
        "RECS__API__MAX_N": str(TOP_N),
        "RECS__SCHEDULE__RETRIES": "0",
    }


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory, redis_server, cluster, executor_env):
    """The same input built twice: by the nightly DAG on the cluster (published) and by
    python -m jobs.pipeline on local[2], as many cores as the cluster has."""
    tmp = tmp_path_factory.mktemp("cluster-runs")
    generate_data.generate(spark, PARAMS, str(tmp / "data"), "csv", header=True, iso=True, bad=0, partitions=2)
    # python_env is set here too: with a local master it is not used.
    local_env = driver_env(**run_settings(tmp, redis_server.url, "local-runs", "local"), RECS__SPARK__MASTER="local[2]",
                           RECS__SPARK__PYTHON_ENV=str(executor_env))  # fmt: skip
    local_command = [sys.executable, "-m", "jobs.pipeline", "--run-date", RUN_DATE, "--stages", ",".join(LOCAL_STAGES)]
    # Alongside the DAG, which spends much of its time starting JVMs.
    local = start_logged(local_command, local_env, tmp / "local.log", cwd=tmp)

    # spark-submit starts in the Airflow worker's folder: an empty one, so that nothing of the
    # project reaches the executors from there.
    submit_dir = tmp / "airflow-worker"
    submit_dir.mkdir()
    dag_env = driver_env(
        **run_settings(tmp, redis_server.url, "cluster-runs", "cluster"),
        RECS__SPARK__PYTHON_ENV=str(executor_env),
        AIRFLOW_CONN_SPARK_RECS=json.dumps({"conn_type": "spark", "host": cluster.url}),
        AIRFLOW_HOME=str(tmp / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        RECS_BUNDLE=str(bundle(tmp / "recs_jobs.zip")),
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    try:
        must_succeed([airflow, "db", "migrate"], dag_env, tmp / "db.log", cwd=submit_dir, timeout=300)
        dag_command = [airflow, "dags", "test", "nightly_recommendations", RUN_DATE]
        must_succeed(dag_command, dag_env, tmp / "dag.log", cwd=submit_dir, timeout=1500)
    finally:
        local_status = exit_status(local, timeout=900)
    must_have_succeeded(local_status, local_command, tmp / "local.log")
    return {"cluster": tmp / "cluster-runs" / RUN_DATE, "local": tmp / "local-runs" / RUN_DATE,
            "dag_log": tmp / "dag.log", "bundle": dag_env["RECS_BUNDLE"]}  # fmt: skip


@on_cluster
def test_each_task_submits_the_env_the_code_and_the_drivers_python(runs, executor_env):
    commands = [line for line in runs["dag_log"].read_text().splitlines() if "Spark-Submit cmd:" in line]
    assert len(commands) == len(SPARK_STAGES)
    for command in commands:
        assert f"--archives {executor_env}#environment" in command and f"--py-files {runs['bundle']}" in command
        assert "--conf spark.pyspark.python=./environment/bin/python" in command
        assert f"--conf spark.pyspark.driver.python={Path(sys.executable).parent}/" in command
        assert f"--conf spark.driver.extraJavaOptions={JVM_OPTIONS} -Dlog4j2.configurationFile=" in command


@on_cluster
def test_every_spark_task_of_the_dag_ran_on_the_cluster_with_the_env_and_code_shipped(runs, cluster):
    apps = [app for app in cluster.master_state()["completedapps"] if app["name"].endswith(RUN_DATE)]
    assert sorted(app["name"] for app in apps) == sorted(f"recs-{stage}-{RUN_DATE}" for stage in SPARK_STAGES)
    idle = []
    for app in apps:
        # An executor fetches the app's files with its first task; finalize's work is the driver's.
        busy = [executor for executor in cluster.workdir.glob(f"worker-*/{app['id']}/*")
                if "Running task" in (executor / "stderr").read_text()]  # fmt: skip
        idle += [] if busy else [app["name"]]
        for executor in busy:
            assert (executor / "environment" / "bin" / "python").exists() and (executor / "recs_jobs.zip").exists()
    assert set(idle) <= {f"recs-finalize-{RUN_DATE}"}, f"apps whose executors ran nothing: {idle}"


def sorted_frame(path: Path, keys: list[str]) -> pd.DataFrame:
    frame = recommendation_rows(path) if path.name == "recommendations" else pd.read_parquet(path)
    return frame.sort_values(keys).reset_index(drop=True)


@on_cluster
def test_the_cluster_lists_are_the_local_lists(runs):
    """The same lists, and the same scores bit for bit where Spark computes them: ALS's blocks and
    seed come from the config, and neither the number of cores nor the task partitioning changes
    what it computes. The similar stage's cosines are numpy BLAS products over blocks of items
    whose shape follows the task partitioning, and BLAS sums in an order that depends on that
    shape: there the last bit of a float32 score may differ (107 of 4,000 did, by at most 1.2e-7), far below
    the 6 significant digits the store keeps, so the ids and order must match exactly and the
    scores within float32 rounding."""
    keys = {"recommendations": ["variant", "user_id", "rank"], "popular": ["scope", "category", "rank"],
            "similar": ["method", "item_id", "rank"]}  # fmt: skip
    for output, order in keys.items():
        built, local = sorted_frame(runs["cluster"] / output, order), sorted_frame(runs["local"] / output, order)
        assert len(built) > 0
        ids = [column for column in local.columns if column != "score"]
        pd.testing.assert_frame_equal(built[ids], local[ids], check_like=True, obj=output)
        exact = output != "similar"
        pd.testing.assert_series_equal(built["score"], local["score"], check_exact=exact, rtol=1e-6, atol=0.0,
                                       obj=output)  # fmt: skip


@on_cluster
def test_the_cluster_run_is_published(runs, redis_server):
    import redis

    from store.contract import KeyLayout

    manifest = json.loads((runs["cluster"] / "manifest.json").read_text())
    current = redis.Redis.from_url(redis_server.url).get(KeyLayout("cluster").current)
    assert current is not None and current.decode() == manifest["run_id"]
    assert manifest["counts"]["output"]["users"] == manifest["counts"]["prepared"]["users"] > 0
