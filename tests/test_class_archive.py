"""The JVM class archive (spark.class_archive, tools/jvm_archive.py): built by a real spark-submit,
mapped by the drivers the jobs and the DAG start, and ignored without a word when it is unusable."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conf.schema import SparkSection
from jobs.class_archive import runtime_stamp, stamp_path, write_stamp
from jobs.session import driver_java_options
from tools.jvm_archive import build_archive
from tools.processes import ROOT, project_env

OWN_OPTIONS = "-Dproject.probe=1"


def section(tmp_path: Path, archive: str | None, **conf: str) -> SparkSection:
    return SparkSection(master="local[1]", checkpoint_dir=str(tmp_path / "checkpoints"), conf=conf,
                        class_archive=archive)  # fmt: skip


def test_driver_options_name_the_archive_only_when_it_is_built_for_this_java_and_pyspark(tmp_path):
    archive = tmp_path / "class archive.jsa"  # a space, which the option quotes
    configured = section(tmp_path, str(archive), **{"spark.driver.extraJavaOptions": OWN_OPTIONS})
    assert driver_java_options(configured, "-Dextra=1") == f"{OWN_OPTIONS} -Dextra=1"
    archive.write_bytes(b"an archive without its stamp")
    assert driver_java_options(configured) == OWN_OPTIONS, "no stamp: not known to fit this Java"
    write_stamp(str(archive))
    options = shlex.split(driver_java_options(configured, "-Dextra=1"))
    assert options[:3] == [OWN_OPTIONS, "-Dextra=1", f"-XX:SharedArchiveFile={archive}"]
    assert set(options[3:]) == {"-Xlog:cds=off", "-Xlog:cds+dynamic=off"}
    Path(stamp_path(str(archive))).write_text(json.dumps({**runtime_stamp(), "pyspark": "0.0.1"}))
    assert driver_java_options(configured) == OWN_OPTIONS, "built for another PySpark"
    write_stamp(str(archive))
    remote = section(tmp_path, str(archive), **{"spark.submit.deployMode": "cluster"})
    assert driver_java_options(remote) == "", "a driver in cluster deploy mode runs on another machine"
    assert driver_java_options(section(tmp_path, None)) == ""


def test_the_dag_passes_the_archive_to_every_spark_submit(tmp_path):
    archive = tmp_path / "classes.jsa"
    archive.write_bytes(b"any file")
    write_stamp(str(archive))
    dag_file = str(ROOT / "dags" / "nightly_recommendations.py")
    probe = (
        "import importlib.util, json\n"
        f"spec = importlib.util.spec_from_file_location('nightly', {dag_file!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(json.dumps({t.task_id: t.conf.get('spark.driver.extraJavaOptions') for t in module.dag.tasks"
        " if hasattr(t, 'application')}))\n"
    )
    env = project_env(RECS__SPARK__CLASS_ARCHIVE=str(archive), AIRFLOW_HOME=str(tmp_path / "airflow"))
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    options = json.loads(result.stdout.strip().splitlines()[-1])
    assert "train" in options and "publish" in options
    for task_id, value in options.items():
        assert "-Dlog4j2.configurationFile=" in value, task_id
        assert f"-XX:SharedArchiveFile={archive}" in value, task_id


@pytest.fixture(scope="module")
def built_archive(tmp_path_factory):
    archive = tmp_path_factory.mktemp("jvm") / "spark-classes.jsa"
    build_archive({"spark.driver.memory": "1g"}, str(archive))
    return archive


PROBE = """
import sys
from conf.schema import SparkSection
from jobs.session import spark_session
section = SparkSection(master="local[1]", checkpoint_dir=sys.argv[1], class_archive=sys.argv[2],
                       conf={"spark.driver.extraJavaOptions": "-Xlog:class+load=info:file=" + sys.argv[3]})
with spark_session(section, "probe") as spark:
    print("rows", spark.range(5).count())
"""


def run_probe(tmp_path: Path, archive: Path) -> tuple[subprocess.CompletedProcess, str]:
    """A job's session started through jobs.session with this archive; its run and its class-load log."""
    class_log = tmp_path / "class-load.log"
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "checkpoints"), str(archive), str(class_log)],
                            env=project_env(), cwd=ROOT, capture_output=True, text=True, timeout=180)  # fmt: skip
    return result, class_log.read_text() if class_log.exists() else ""


def test_a_built_archive_is_stamped_and_a_driver_maps_spark_classes_from_it(built_archive, tmp_path):
    assert built_archive.stat().st_size > 50 * 2**20
    assert json.loads(Path(stamp_path(str(built_archive))).read_text()) == runtime_stamp()
    result, class_log = run_probe(tmp_path, built_archive)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows 5" in result.stdout
    from_archive = [line for line in class_log.splitlines() if "org.apache.spark." in line and "(top)" in line]
    assert len(from_archive) > 1000, "Spark's classes came from the archive's top layer"


def test_an_archive_without_a_matching_stamp_is_left_out_and_the_jdks_own_archive_still_serves(tmp_path):
    junk = tmp_path / "stale.jsa"
    junk.write_bytes(b"\x00" * 4096)
    result, class_log = run_probe(tmp_path, junk)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows 5" in result.stdout
    assert "cds" not in result.stderr and "shared archive" not in result.stderr.lower()
    assert "(top)" not in class_log and "org.apache.spark." in class_log, "Spark's classes loaded from the jars"
    assert "java.lang.Object source: shared objects file" in class_log, "the JDK's own archive was not lost"
