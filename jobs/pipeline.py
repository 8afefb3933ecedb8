"""Run the nightly pipeline for one logical date in a single Spark session, without Airflow.

    python -m jobs.pipeline --run-date 2026-11-29
    python -m jobs.pipeline --run-date 2026-11-29 --stages recommend,finalize

Stages run in order: prepare, train, evaluate, recommend, finalize. The Airflow DAG runs the
same stage functions, one spark-submit each.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from conf import ConfigError, load_config
from jobs import evaluate, finalize, prepare, recommend, train
from jobs.run_layout import RunLayout
from jobs.session import spark_session
from jobs.stage import EXIT_REFUSED, JobError, configure_logging, parse_job_args, run_stage

log = logging.getLogger("recs.pipeline")
BUILD_STAGES = {
    "prepare": prepare.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "recommend": recommend.run,
    "finalize": finalize.run,
}


def _stage_list(text: str) -> list[str]:
    stages = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in stages if name not in BUILD_STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stages {unknown}; choose from {', '.join(BUILD_STAGES)}")
    return stages


def _add_stages_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stages", type=_stage_list, default=list(BUILD_STAGES), help="comma-separated stages to run")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen stages for one logical date; exit 2 when a stage refuses."""
    configure_logging()
    args = parse_job_args(__doc__, argv, extra=_add_stages_argument)
    try:
        cfg = load_config(args.config)
        layout = RunLayout.from_config(cfg, args.run_date)
        with spark_session(cfg["spark"], f"recs-pipeline-{args.run_date}") as spark:
            for stage in args.stages:
                run_stage(spark, cfg, layout, stage, BUILD_STAGES[stage])
    except (JobError, ConfigError) as exc:
        log.error("pipeline refused: %s", exc)
        return EXIT_REFUSED
    log.info("run folder: %s", layout.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
