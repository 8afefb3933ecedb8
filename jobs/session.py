"""The one place a SparkSession is built, from the ``spark`` section of the pipeline config."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from jobs import storage
from jobs.class_archive import class_archive_options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from conf.schema import SparkSection

log = logging.getLogger("recs.session")

# Where each executor unpacks the packed virtualenv (spark.python_env), in its working folder.
PYTHON_ENV_ALIAS = "environment"
EXECUTOR_PYTHON = f"./{PYTHON_ENV_ALIAS}/bin/python"
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def launched_by_spark_submit() -> bool:
    """True when a spark-submit JVM started this Python driver (it then owns spark.master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def python_env_archive(python_env: str) -> str:
    """The packed virtualenv as --archives and spark.archives take it, unpacked as ./environment."""
    return f"{storage.absolute_uri(python_env)}#{PYTHON_ENV_ALIAS}"


def driver_java_options(spark_cfg: SparkSection, *extra: str) -> str:
    """spark.driver.extraJavaOptions: the config's own, then ``extra``, then the class archive's."""
    own = spark_cfg.conf_strings().get(DRIVER_JAVA_OPTIONS)
    return " ".join(filter(None, (own, *extra, *class_archive_options(spark_cfg))))


def build_spark_session(spark_cfg: SparkSection, app_name: str) -> SparkSession:
    """Create (or join) the SparkSession described by the config's ``spark`` section."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        builder = builder.master(spark_cfg.master)
        if spark_cfg.master.startswith("local"):
            # Local Python workers must use this interpreter (and its packages), not the first python3 on PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        elif spark_cfg.python_env:
            # PySpark takes the executors' python from this variable when it starts the context.
            builder = builder.config("spark.archives", python_env_archive(spark_cfg.python_env))
            os.environ["PYSPARK_PYTHON"] = EXECUTOR_PYTHON
    for key, value in spark_cfg.conf_strings().items():
        builder = builder.config(key, value)
    if not launched_by_spark_submit() and (java_options := driver_java_options(spark_cfg)):
        builder = builder.config(DRIVER_JAVA_OPTIONS, java_options)
    spark = builder.getOrCreate()
    spark.sparkContext.setCheckpointDir(storage.absolute_uri(spark_cfg.checkpoint_dir))
    return spark


@contextmanager
def spark_session(spark_cfg: SparkSection, app_name: str) -> Iterator[SparkSession]:
    """Yield a session and stop it afterwards, removing this context's checkpoint files."""
    spark = build_spark_session(spark_cfg, app_name)
    restore_logging = None
    try:
        yield spark
    except BaseException:
        restore_logging = quiet_after_failure(spark)
        raise
    finally:
        checkpoint_dir = spark.sparkContext.getCheckpointDir()
        if checkpoint_dir:
            storage.delete(spark, checkpoint_dir)
        spark.stop()
        if restore_logging is not None:
            restore_logging()


def quiet_after_failure(spark: SparkSession) -> Callable[[], None]:
    """Silence Spark's own logging once the work has failed; return what turns it back on."""
    # A failed job can leave sibling tasks running; stopping under them makes the block manager
    # log warnings with Java stack traces about blocks it cannot remove. The job's own error is
    # what the user needs, in one line, so nothing Spark says while shutting down is kept. The
    # level is the JVM's, which outlives the session: a later session in this process needs it back.
    try:
        log4j = spark.sparkContext._jvm.org.apache.logging.log4j
        level = log4j.LogManager.getRootLogger().getLevel()
        spark.sparkContext.cancelAllJobs()
        spark.sparkContext.setLogLevel("OFF")
    except Exception:  # noqa: BLE001 - a session that is already gone has nothing left to say
        log.debug("could not quiet Spark after a failure", exc_info=True)
        return lambda: None

    def restore() -> None:
        try:
            log4j.core.config.Configurator.setRootLevel(level)
        except Exception:  # noqa: BLE001 - logging stays off rather than hiding the job's error
            log.debug("could not restore Spark's log level", exc_info=True)

    return restore
