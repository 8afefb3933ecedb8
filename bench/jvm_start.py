"""The cost a nightly DAG pays once per task: starting a Spark driver. spark-submit of a one-job
application, timed from the command to its exit, with and without the JVM class archive
(spark.class_archive, tools/jvm_archive.py), alternating so that both see the same machine."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from conf.schema import SparkSection
from jobs.class_archive import class_archive_options
from tools.jvm_archive import build_archive, spark_submit_path, submit_env

PROBE = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("recs-bench-jvm-start").getOrCreate()
spark.range(100_000).selectExpr("sum(id) AS total").first()
spark.stop()
"""
DRIVER_MEMORY = "4g"


def bench_jvm_start(repeats: int, work: Path) -> dict:
    """Build an archive (timed), then time the probe's spark-submit with and without it."""
    archive = work / "jvm" / "spark-classes.jsa"
    build_seconds = build_archive({"spark.driver.memory": DRIVER_MEMORY}, str(archive))
    probe = work / "jvm_start_probe.py"
    probe.write_text(PROBE)
    section = SparkSection(master="local[*]", checkpoint_dir=str(work / "checkpoints"), conf={},
                           class_archive=str(archive))  # fmt: skip
    archive_setting = f"spark.driver.extraJavaOptions={' '.join(class_archive_options(section))}"
    variants = {"plain": [], "class_archive": [archive_setting]}
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, settings in variants.items():
            runs[name].append(_submit_seconds(probe, settings))
            print(f"    jvm start, {name}: {runs[name][-1]:.2f} s")
    return {
        "archive_build_seconds": round(build_seconds, 1),
        "archive_mib": round(archive.stat().st_size / 2**20),
        "seconds": {name: {"median": round(statistics.median(r), 3), "runs": r} for name, r in runs.items()},
    }


def _submit_seconds(probe: Path, settings: list[str]) -> float:
    command = [spark_submit_path(), "--master", "local[*]", "--conf", f"spark.driver.memory={DRIVER_MEMORY}"]
    for setting in settings:
        command += ["--conf", setting]
    started = time.perf_counter()
    subprocess.run([*command, str(probe)], env=submit_env(), capture_output=True, check=True)
    return round(time.perf_counter() - started, 3)


def markdown(result: dict) -> list[str]:
    """The driver-start table."""
    seconds = result["seconds"]
    plain, archived = seconds["plain"]["median"], seconds["class_archive"]["median"]
    repeats = len(seconds["plain"]["runs"])
    return [
        f"## Driver start: spark-submit of a one-job application, median of {repeats}",
        "",
        "| driver JVM | median s | runs |",
        "|---|---:|---|",
        f"| plain (loads Spark's classes from the jars) | {plain} | {seconds['plain']['runs']} |",
        f"| with the class archive (`spark.class_archive`) | {archived} | {seconds['class_archive']['runs']} |",
        "",
        f"The archive saves {plain - archived:.2f} s per driver start ({1 - archived / plain:.0%}); the nightly DAG "
        f"starts 8 drivers. Building it ({result['archive_mib']} MiB) took {result['archive_build_seconds']} s, once.",
        "",
    ]
