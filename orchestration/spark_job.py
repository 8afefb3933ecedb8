"""The operator every pipeline task uses: spark-submit of one job, where a refusal is final.

A job refuses (exit status 2, one log line saying why) when retrying cannot help: a bad
config, bad input above the quarantine threshold, an incomplete run, a publish the store
refuses. Airflow retries a failed task, so such a failure is raised as AirflowFailException,
which Airflow does not retry; a crash (any other exit status) is retried as usual. The exit
status is the driver's, so this holds for client deploy mode, the default.

Given ``python_env`` (a packed virtualenv, spark.python_env), the executors run Python from it:
it goes with --archives and spark.pyspark.python points into it, while the driver keeps the
interpreter running this task (spark.pyspark.driver.python), which has the same packages.
"""

from __future__ import annotations

import sys

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from conf.cli import EXIT_REFUSED
from jobs.session import EXECUTOR_PYTHON, python_env_archive


class SparkJobOperator(SparkSubmitOperator):
    """SparkSubmitOperator whose job refusals (exit status 2) fail the task without retries."""

    def __init__(self, *, python_env: str | None = None, **kwargs):
        """The operator's arguments, and optionally the executors' packed virtualenv."""
        if python_env:
            kwargs["archives"] = ",".join(filter(None, (kwargs.get("archives"), python_env_archive(python_env))))
            # Without a driver setting, spark.pyspark.python would be the driver's python too, and
            # ./environment does not exist in the driver's working folder in client mode.
            kwargs["conf"] = {
                **(kwargs.get("conf") or {}),
                "spark.pyspark.python": EXECUTOR_PYTHON,
                "spark.pyspark.driver.python": sys.executable,
            }
        super().__init__(**kwargs)

    def execute(self, context):
        """Submit the job; turn a refusal into a failure Airflow does not retry."""
        try:
            return super().execute(context)
        except AirflowException as exc:
            if self.exit_status() == EXIT_REFUSED:
                raise AirflowFailException(
                    f"{self.task_id} refused (exit status {EXIT_REFUSED}); not retried: the job's log says why"
                ) from exc
            raise

    def exit_status(self) -> int | None:
        """The spark-submit exit status of the last submission, if there was one."""
        process = getattr(self._hook, "_submit_sp", None)
        return None if process is None else process.returncode
