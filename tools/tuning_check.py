"""How optimistic is the tuned figure? A nested check of the tune stage on a finished run.

    python -m tools.tuning_check --config conf/movielens.yaml --run-date 2026-11-29

The tune stage picks its setting on the run's holdout and evaluate reports the winner on that
same holdout, so the reported NDCG@k is a little optimistic. This check keeps the holdout out
of the choice: it splits the training part again by time (the same ``evaluate`` settings),
runs tune's own search on that inner split, then fits the start and the inner winner on the
whole training part and scores both on the untouched holdout. It reads the run's
``evaluation/split`` and writes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conf import ConfigError, load_config
from conf.cli import CommandParser, add_config_argument, add_run_date_argument, refuse
from jobs.holdout import relevant_items, split_interactions
from jobs.run_layout import RunLayout

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from conf.schema import Config


def inner_split(split: DataFrame, cfg: Config) -> DataFrame:
    """The training part of a split, split again the same way: the outer holdout is left out."""
    return split_interactions(split.where("NOT holdout").drop("holdout"), cfg.evaluate)


def holdout_score(cfg: Config, split: DataFrame, setting: dict) -> float:
    """NDCG@k of ``setting`` fitted on the split's training part, on its holdout users."""
    from jobs.ranking import seen_items_of
    from jobs.tune import TrialScorer

    train, relevant = split.where("NOT holdout"), relevant_items(split.where("holdout"))
    seen = seen_items_of(train, relevant)
    return TrialScorer(cfg, train, seen, relevant)(setting)


def nested_check(cfg: Config, split: DataFrame) -> dict:
    """Search on the inner split, then score the start and the inner winner on the outer holdout."""
    from jobs.tune import coordinate_search, tunable

    inner = inner_split(split, cfg).cache()
    start = tunable(cfg.train)
    result = coordinate_search(
        lambda setting: holdout_score(cfg, inner, setting),
        start, cfg.tune.space, cfg.tune.trials, cfg.tune.time_limit_minutes * 60,
    )  # fmt: skip
    inner.unpersist()
    return {
        "start": start,
        "inner_trials": [trial.as_dict() for trial in result.trials],
        "chosen": result.best,
        "outer_ndcg_at_k": {
            "start": holdout_score(cfg, split, start),
            "chosen": holdout_score(cfg, split, result.best),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the nested check on the run of --run-date and print its figures."""
    from jobs.runner import configure_logging
    from jobs.session import spark_session

    parser = CommandParser(__doc__, prog="python -m tools.tuning_check")
    add_config_argument(parser)
    add_run_date_argument(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return refuse("tuning check", exc)
    configure_logging()
    layout = RunLayout.from_config(cfg, args.run_date)
    with spark_session(cfg.spark, "recs-tuning-check") as spark:
        found = nested_check(cfg, spark.read.parquet(layout.split))
    for trial in found["inner_trials"]:
        print(f"inner trial {trial['trial']:>3}  NDCG@{cfg.evaluate.k} {trial['ndcg_at_k']}  {trial['setting']}")
    outer = found["outer_ndcg_at_k"]
    print(f"chosen on the inner split: {found['chosen']}")
    print(f"on the untouched holdout: the start {outer['start']:.4f}, the inner choice {outer['chosen']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
