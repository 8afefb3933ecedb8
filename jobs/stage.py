"""Running one stage of a run: arguments, the Spark session, timing, the stage report and
clear failures. Every job's ``main(argv)`` is a call to ``job_main``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from conf import ConfigError, load_config
from jobs import storage
from jobs.run_layout import RunLayout, parse_run_date, stages_depending_on
from jobs.session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    StageBody = Callable[[SparkSession, dict, RunLayout], dict]

log = logging.getLogger("recs.stage")
EXIT_REFUSED = 2


class JobError(RuntimeError):
    """A job refused to go on; the message says why and what to do about it."""


def configure_logging() -> None:
    """Send the project's log lines to stderr in one recognisable format."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


def parse_job_args(description: str, argv: Sequence[str] | None, extra: Callable | None = None) -> argparse.Namespace:
    """Parse the arguments every job takes: --config and --run-date (plus any extra ones)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="pipeline YAML (default: conf/pipeline.yaml)")
    parser.add_argument("--run-date", required=True, type=_run_date_arg, help="logical run date, YYYY-MM-DD")
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def _run_date_arg(text: str) -> str:
    try:
        return parse_run_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run_stage(spark: SparkSession, cfg: dict, layout: RunLayout, stage: str, body: StageBody) -> dict:
    """Run one stage body, timed, and write its report; the run stops counting as complete first."""
    # A run whose outputs are being replaced is not complete until finalize says so again, and
    # the reports of stages that read this stage's output no longer describe it.
    storage.delete(spark, layout.manifest)
    for stale in (stage, *stages_depending_on(stage)):
        storage.delete(spark, layout.stage_report(stale))
    log.info("stage %s: started for run %s", stage, layout.run_date)
    started = time.monotonic()
    report = body(spark, cfg, layout)
    report = {**report, "stage": stage, "seconds": round(time.monotonic() - started, 3)}
    # finalize's output is the manifest itself, which must stay the last file written.
    if stage != "finalize":
        storage.write_json(spark, layout.stage_report(stage), report)
    log.info("stage %s: done in %.1fs", stage, report["seconds"])
    return report


def run_job(
    name: str,
    description: str,
    argv: Sequence[str] | None,
    action: Callable[[SparkSession, dict, RunLayout, argparse.Namespace], object],
    add_arguments: Callable | None = None,
    refusals: tuple[type[Exception], ...] = (),
) -> int:
    """The shape of every job's main: parse, load config, build Spark, act; a refusal exits 2."""
    configure_logging()
    args = parse_job_args(description, argv, extra=add_arguments)
    try:
        cfg = load_config(args.config)
        layout = RunLayout.from_config(cfg, args.run_date)
        with spark_session(cfg["spark"], f"recs-{name}-{args.run_date}") as spark:
            action(spark, cfg, layout, args)
    except (JobError, ConfigError, *refusals) as exc:
        log.error("%s refused: %s", name, exc)
        return EXIT_REFUSED
    return 0


def job_main(stage: str, body: StageBody, description: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of a build stage: run_job around run_stage."""
    return run_job(stage, description, argv, lambda spark, cfg, layout, _: run_stage(spark, cfg, layout, stage, body))
