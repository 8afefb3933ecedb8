"""Build the JVM class-data archive that local Spark drivers map at start (spark.class_archive).

    python -m tools.jvm_archive            # or: make jvm-archive

A Spark driver loads and verifies some fifteen thousand classes from the jars before its first
job finishes, and a nightly DAG starts one driver JVM per task. Java's application class-data
sharing (CDS) keeps those classes, already parsed and verified, in one file that every later
JVM maps instead. This command runs a small Spark workload under spark-submit, as the DAG's
tasks do, with ``-XX:ArchiveClassesAtExit``; the JVM writes the classes it loaded when it exits.
The workload touches what the pipeline's stages use: CSV parsing, windows, joins, aggregation,
caching, Parquet and JSON, an ALS fit with checkpoints, Arrow batches to and from Python.

The archive belongs to one Java build and one set of Spark jars. A stamp written next to it
(jobs/class_archive.py) records both, and drivers are given the archive only while the stamp
matches, so after a Java or PySpark upgrade they start as they would without one until it is
built again; the Makefile rebuilds it when the virtualenv changes. The file is written next to
its final name and moved there when complete, so a driver starting meanwhile never maps half
of one.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conf import load_config
from conf.cli import add_config_argument
from jobs.class_archive import write_stamp
from jobs.session import DRIVER_JAVA_OPTIONS
from tools.processes import project_env

WARM_UP_FLAG = "--warm-up"


def spark_submit_path() -> str:
    """The spark-submit of this virtualenv's PySpark."""
    return str(Path(sys.executable).with_name("spark-submit"))


def submit_env() -> dict[str, str]:
    """The environment for a spark-submit of project code: tools.processes.project_env, with
    this Python as the driver's and the workers'."""
    return project_env(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)


def spark_submit_command(conf: dict[str, str], archive_path: str) -> list[str]:
    """spark-submit of this file's warm-up, dumping the JVM's loaded classes into archive_path."""
    dump = f"-XX:ArchiveClassesAtExit={shlex.quote(archive_path)}"
    settings = {
        **conf,
        DRIVER_JAVA_OPTIONS: " ".join(filter(None, (conf.get(DRIVER_JAVA_OPTIONS), dump))),
        # The classes a job loads do not depend on how many tasks it has; fewer tasks finish sooner.
        "spark.sql.shuffle.partitions": "2",
    }
    command = [spark_submit_path(), "--master", "local[*]"]
    for key, value in settings.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, __file__, WARM_UP_FLAG]


def build_archive(conf: dict[str, str], target: str) -> float:
    """Run the warm-up under spark-submit and move its archive to ``target``; the seconds it took."""
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        # spark-submit returns when the JVM has exited, that is after it has written the archive.
        done = subprocess.run(spark_submit_command(conf, partial), env=submit_env(), capture_output=True, text=True)
        if done.returncode != 0 or not os.path.isfile(partial):
            tail = "\n".join(done.stderr.strip().splitlines()[-20:])
            raise RuntimeError(f"the warm-up job failed (exit status {done.returncode}):\n{tail}")
        os.replace(partial, target)
        write_stamp(target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return time.monotonic() - started


def warm_up() -> None:
    """A small workload that loads the classes the pipeline's stages use (run by spark-submit)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("recs-jvm-archive").getOrCreate()
    with tempfile.TemporaryDirectory(prefix="recs-jvm-archive-") as folder:
        spark.sparkContext.setCheckpointDir(f"{folder}/checkpoints")
        pairs = _prepared_pairs(spark, folder)
        _fitted_and_written(spark, pairs, folder)
    spark.stop()


def _prepared_pairs(spark, folder: str):
    """As prepare does: CSV with timestamps, numbered ids, joins, aggregation, cache, Parquet."""
    from pyspark.sql import functions as F

    lines = [f"u{i % 97},i{(i * 7) % 53},{1 + i % 3},2026-11-{1 + i % 28:02d}T10:00:00Z" for i in range(2000)]
    Path(folder, "events.csv").write_text("user_id,item_id,weight,timestamp\n" + "\n".join(lines) + "\n")
    events = (
        spark.read.csv(f"{folder}/events.csv", header=True)
        .withColumn("at", F.to_timestamp("timestamp"))
        .withColumn("weight", F.col("weight").cast("double"))
    )
    users = _numbered(events, "user_id", "user_idx")
    items = _numbered(events, "item_id", "item_idx")
    pairs = (
        events.join(users, "user_id").join(items, "item_id")
        .groupBy("user_idx", "item_idx").agg(F.sum("weight").alias("rating"), F.max("at").alias("at"))
        .cache()
    )  # fmt: skip
    pairs.count()
    pairs.write.parquet(f"{folder}/pairs")
    return spark.read.parquet(f"{folder}/pairs")


def _fitted_and_written(spark, pairs, folder: str) -> None:
    """As train, recommend and publish do: an ALS fit with checkpoints, Arrow both ways, writes."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    als = ALS(userCol="user_idx", itemCol="item_idx", ratingCol="rating", implicitPrefs=True, rank=4,
              maxIter=3, checkpointInterval=2, numUserBlocks=2, numItemBlocks=2, seed=1)  # fmt: skip
    model = als.fit(pairs)
    model.write().save(f"{folder}/model")
    factors = model.itemFactors.mapInArrow(lambda batches: iter(batches), model.itemFactors.schema)
    factors.write.parquet(f"{folder}/factors")
    spark.read.parquet(f"{folder}/factors").agg(F.count("*")).first()
    model.userFactors.toArrow()
    ranked = F.collect_list("item_idx").over(Window.partitionBy("user_idx").orderBy(F.desc("rating")))
    pairs.select("user_idx", ranked.alias("items")).write.json(f"{folder}/lists")


def _numbered(frame, column: str, index: str):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return frame.select(column).distinct().withColumn(index, F.row_number().over(Window.orderBy(column)) - 1)


def main(argv: list[str] | None = None) -> int:
    """Build the archive named by spark.class_archive; exit 1 when the warm-up job fails."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == [WARM_UP_FLAG]:
        warm_up()
        return 0
    parser = argparse.ArgumentParser(prog="python -m tools.jvm_archive", description=__doc__.splitlines()[0])
    add_config_argument(parser)
    args = parser.parse_args(argv)
    spark_cfg = load_config(args.config).spark
    if not spark_cfg.class_archive:
        print("spark.class_archive is null: no archive to build")
        return 0
    try:
        seconds = build_archive(spark_cfg.conf_strings(), spark_cfg.class_archive)
    except RuntimeError as exc:
        print(f"error: could not build the JVM class archive: {exc}", file=sys.stderr)
        return 1
    size = os.path.getsize(spark_cfg.class_archive) / 2**20
    print(f"    {spark_cfg.class_archive}: {size:.0f} MiB in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
