"""The operator every pipeline task uses: spark-submit of one job, where a refusal is final.

A job refuses (exit status 2, one log line saying why) when retrying cannot help: a bad
config, bad input above the quarantine threshold, an incomplete run, a publish the store
refuses. Airflow retries a failed task, so such a failure is raised as AirflowFailException,
which Airflow does not retry; a crash (any other exit status) is retried as usual. The exit
status is the driver's, so this holds for client deploy mode, the default.
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from conf.cli import EXIT_REFUSED


class SparkJobOperator(SparkSubmitOperator):
    """SparkSubmitOperator whose job refusals (exit status 2) fail the task without retries."""

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
