"""Run the nightly pipeline for one logical date in a single Spark session, without Airflow.

    python -m jobs.pipeline --run-date 2026-11-29
    python -m jobs.pipeline --run-date 2026-11-29 --stages recommend,finalize

Stages run in the order of the stage table (jobs/stages.py): export_events, prepare, tune,
train, evaluate, recommend, similar, finalize, quality_gate, publish. The Airflow DAG runs the
same stages, one spark-submit each. A run the quality gate holds stops at quality_gate. To
build a run without Redis, switch events off and leave publish out:

    RECS__EVENTS__ENABLED=false python -m jobs.pipeline --run-date 2026-11-29 \
        --stages export_events,prepare,tune,train,evaluate,recommend,similar,finalize
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jobs.runner import run_job, run_stage
from jobs.stages import PIPELINE

log = logging.getLogger("recs.pipeline")


def stage_list(text: str) -> list[str]:
    """Parse --stages: known names, comma-separated, returned in pipeline order."""
    stages = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in stages if name not in PIPELINE.names]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stages {unknown}; choose from {', '.join(PIPELINE.names)}")
    return sorted(stages, key=PIPELINE.names.index)


def _add_stages_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stages", type=stage_list, default=list(PIPELINE.names), help="comma-separated stages to run")


def run_stages(spark, cfg, layout, args: argparse.Namespace) -> None:
    """Run the stages named in --stages, in pipeline order, in this one session."""
    for stage in args.stages:
        run_stage(spark, cfg, layout, stage)
    log.info("run folder: %s", layout.run_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen stages for one logical date; exit 2 when a stage refuses."""
    return run_job("pipeline", __doc__, argv, run_stages, _add_stages_argument)


if __name__ == "__main__":
    sys.exit(main())
