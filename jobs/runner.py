"""Running stages: arguments, config, the Spark session, timing, stage reports and refusals.
Every job's ``main(argv)`` is a call to ``job_main`` (or ``run_job``).

The order matters: arguments and the whole configuration are checked first, so a bad date, an
unknown setting or a bad value stops the command (one line, exit status 2) before a Spark
session starts or anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from conf import ConfigError, load_config
from conf.cli import EXIT_REFUSED, CommandParser, add_config_argument, add_run_date_argument
from conf.quoting import clip
from conf.redaction import redact_text, redact_values
from jobs import storage
from jobs.run_layout import RunLayout
from jobs.session import spark_session
from jobs.stages import BUILD, FINALIZE, PIPELINE
from store.errors import PublishRefused

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from conf.schema import Config

log = logging.getLogger("recs.runner")


class JobError(RuntimeError):
    """A job refused to go on; the message says why and what to do about it."""


# The longest error message a failure record or a refusal line keeps. The quotes of user data
# inside a message are capped where they are made (conf.quoting); this is the backstop.
MAX_MESSAGE = 2000
# What a job may refuse with: one log line and exit status 2, which Airflow does not retry.
REFUSALS = (JobError, ConfigError, PublishRefused)
JobAction = Callable[["SparkSession", "Config", RunLayout, argparse.Namespace], object]


def configure_logging() -> None:
    """Send the project's log lines to stderr in one recognisable format."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


def run_stage(spark: SparkSession, cfg: Config, layout: RunLayout, name: str) -> dict:
    """Run one stage of the table by name; build stages are timed and leave a report."""
    stage = PIPELINE.stage(name)
    body = importlib.import_module(stage.module).run
    if stage.kind in (BUILD, FINALIZE):
        # A run whose outputs are being replaced is not complete until finalize says so again,
        # and the reports of stages that read this stage's output no longer describe it.
        storage.delete(spark, layout.manifest)
    if stage.kind == BUILD:
        for stale in (name, *PIPELINE.stages_reading(name)):
            storage.delete(spark, layout.stage_report(stale))
    log.info("stage %s: started for run %s", name, layout.run_date)
    started = time.monotonic()
    with recording_failure(spark, layout, name):
        report = body(spark, cfg, layout)
    report = {**report, "stage": name, "seconds": round(time.monotonic() - started, 3)}
    if stage.kind == BUILD:
        # Reports end up in the manifest; a path may carry credentials (s3a://key:secret@bucket).
        storage.write_json(spark, layout.stage_report(name), redact_values(report))
    log.info("stage %s: done in %.1fs", name, report["seconds"])
    return report


@contextmanager
def recording_failure(spark: SparkSession, layout: RunLayout, name: str) -> Iterator[None]:
    """Around a stage's work: on failure leave stages/<name>.failed.json, on success remove it."""
    started = time.monotonic()
    try:
        yield
    except Exception as exc:
        _record_failure(spark, layout, name, exc, time.monotonic() - started)
        raise
    storage.delete(spark, layout.stage_failure(name))


def _record_failure(spark: SparkSession, layout: RunLayout, name: str, exc: Exception, seconds: float) -> None:
    """Leave stages/<name>.failed.json: what failed, how, when, and whether it was a refusal."""
    import datetime as dt

    record = {
        "stage": name,
        "run_date": layout.run_date,
        "refused": isinstance(exc, REFUSALS),
        "error": type(exc).__name__,
        "message": redact_text(str(exc))[:MAX_MESSAGE],
        "seconds": round(seconds, 3),
        "failed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        storage.write_json(spark, layout.stage_failure(name), record)
    except Exception as write_error:  # noqa: BLE001 - the stage's own error is the one to report
        log.warning("could not record the failure of stage %s: %s", name, write_error)


def run_job(
    name: str,
    description: str,
    argv: Sequence[str] | None,
    action: JobAction,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The shape of every job's main: parse, load and check the config, build Spark, act.
    A refusal logs one line and returns exit status 2."""
    configure_logging()
    parser = CommandParser(description, prog=f"python -m jobs.{name}")
    add_config_argument(parser)
    add_run_date_argument(parser)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        layout = RunLayout.from_config(cfg, args.run_date)
        with spark_session(cfg.spark, f"recs-{name}-{args.run_date}") as spark:
            action(spark, cfg, layout, args)
    except REFUSALS as exc:
        log.error("%s refused: %s", name, error_text(exc))
        return EXIT_REFUSED
    except Exception as exc:
        if not _is_redis_failure(exc):
            raise
        # A store that is down is worth a retry (exit 1), but not a page of traceback.
        log.error("%s failed: Redis could not be reached or refused us (%s: %s)", name, type(exc).__name__,
                  error_text(exc))  # fmt: skip
        return 1
    return 0


def error_text(exc: BaseException) -> str:
    """An error's message fit for one log line: secrets masked, line breaks escaped, length capped."""
    return clip(redact_text(str(exc)), MAX_MESSAGE)


def _is_redis_failure(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError, RedisClusterException, TimeoutError

    return isinstance(exc, ConnectionError | TimeoutError | RedisClusterException)


def job_main(name: str, description: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of one stage's job: run_job around run_stage."""
    return run_job(name, description, argv, lambda spark, cfg, layout, _: run_stage(spark, cfg, layout, name))
