"""Run the nightly pipeline for one logical date in a single Spark session, without Airflow.

    python -m jobs.pipeline --run-date 2026-11-29
    python -m jobs.pipeline --run-date 2026-11-29 --stages recommend,finalize

Stages run in order: prepare, train, evaluate, recommend, finalize, publish. The Airflow DAG
runs the same stage functions, one spark-submit each. Leave publish out of --stages to build a
run without touching Redis.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs import evaluate, finalize, prepare, publish, recommend, train
from jobs.run_layout import RunLayout
from jobs.stage import run_job, run_stage
from serving.publishing import PublishRefused

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("recs.pipeline")
BUILD_STAGES = {
    "prepare": prepare.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "recommend": recommend.run,
    "finalize": finalize.run,
}
ALL_STAGES = (*BUILD_STAGES, "publish")


def _stage_list(text: str) -> list[str]:
    stages = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in stages if name not in ALL_STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stages {unknown}; choose from {', '.join(ALL_STAGES)}")
    return sorted(stages, key=ALL_STAGES.index)


def _add_stages_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stages", type=_stage_list, default=list(ALL_STAGES), help="comma-separated stages to run")


def run_stages(spark: SparkSession, cfg: dict, layout: RunLayout, args: argparse.Namespace) -> None:
    """Run the stages named in --stages, in pipeline order, in this one session."""
    for stage in args.stages:
        if stage == "publish":
            publish.run(spark, cfg, layout)
        else:
            run_stage(spark, cfg, layout, stage, BUILD_STAGES[stage])
    log.info("run folder: %s", layout.run_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen stages for one logical date; exit 2 when a stage refuses."""
    return run_job("pipeline", __doc__, argv, run_stages, _add_stages_argument, (PublishRefused,))


if __name__ == "__main__":
    sys.exit(main())
