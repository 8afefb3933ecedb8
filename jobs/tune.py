"""tune: choose the run's ALS setting on its own holdout, within a budget.

    spark-submit --py-files dist/recs_jobs.zip jobs/tune.py --run-date 2026-11-29

Writes the split that tune and evaluate share (``evaluation/split``), the winning trial's model
(``evaluation/models/<key>``, for evaluate to reuse when it scores the users the trials fitted
on: every user, or the sample under ``evaluate.on_tune_sample``) and ``tuning/chosen.json``: the setting
train uses, where it came from and why. The search starts from the last good setting (or the
train section) and changes one setting at a time (``tune.space``, in its order), keeping each
change that raises NDCG@k; see ``coordinate_search``. With tuning off, or when no trial
succeeds, the last good setting is kept: the chosen setting of the newest earlier run that
completed and was not held by the quality gate, else the train section.

Spark's ParamGridBuilder and TrainValidationSplit are not used: a grid is the product of every
value, which no nightly budget affords, and TrainValidationSplit splits rows at random, while
this split holds out each user's latest interactions, excludes seen items and is shared with
evaluate.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conf.schema import TUNABLE_SETTINGS, TrainSection
from jobs import storage
from jobs.holdout import (
    keep_holdout_model,
    relevant_items,
    sample_users,
    sampled_split,
    split_interactions,
    split_settings,
    unpersist_all,
)
from jobs.metrics import ranking_metrics
from jobs.run_layout import RunLayout
from jobs.runner import JobError, job_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config, TuneSection

log = logging.getLogger("recs.tune")

TUNED, LAST_GOOD, CONFIGURED = "tuned", "last_good", "config"


class EmptyHoldout(Exception):
    """No user qualifies for the holdout, so no trial can be scored."""


@dataclass
class Trial:
    """One setting tried: what it changed from the start, its score, its time or its error."""

    number: int
    setting: dict
    ndcg_at_k: float | None = None
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        """The trial as the report and the manifest show it."""
        return {"trial": self.number, "setting": self.setting, "ndcg_at_k": self.ndcg_at_k,
                "seconds": round(self.seconds, 3), "error": self.error}  # fmt: skip


@dataclass
class SearchResult:
    """The best setting found, its score, every trial, and why the search stopped."""

    best: dict
    best_score: float | None
    trials: list[Trial] = field(default_factory=list)
    stopped_by: str = "space searched"


def tunable(params: TrainSection) -> dict:
    """The settings the search may change, as they are in ``params``."""
    return {name: getattr(params, name) for name in TUNABLE_SETTINGS}


def coordinate_search(
    score: Callable[[dict], float],
    start: dict,
    space: dict[str, list],
    trials: int,
    time_limit_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Score ``start``, then for each setting of ``space`` in order, each of its values with the
    other settings at the best so far; keep any change that scores higher. A setting is tried
    once. No trial starts after ``trials`` trials or ``time_limit_seconds``. A trial that raises is recorded and
    skipped; when every trial fails the best score is None."""
    started = clock()
    result = SearchResult(best=dict(start), best_score=None)
    candidates = [dict(start)]
    for setting, values in space.items():
        candidates += [{setting: value} for value in values]
    tried: list[dict] = []
    for change in candidates:
        setting = {**result.best, **change}
        if setting in tried:
            continue  # e.g. the start's own value, met again in the space
        if len(result.trials) >= trials:
            result.stopped_by = f"trial budget ({trials})"
            break
        if clock() - started >= time_limit_seconds:
            result.stopped_by = f"time limit ({time_limit_seconds:.0f} s)"
            break
        tried.append(setting)
        trial = Trial(len(result.trials) + 1, {k: v for k, v in setting.items() if start.get(k) != v})
        trial_started = clock()
        try:
            trial.ndcg_at_k = float(score(setting))
        except Exception as exc:  # noqa: BLE001 - one failed trial must not end the search
            log.warning("trial %d %s failed: %s", trial.number, trial.setting, exc)
            trial.error = f"{type(exc).__name__}: {exc}"[:500]
        trial.seconds = clock() - trial_started
        log.info("trial %d %s: NDCG@k %s in %.1f s", trial.number, trial.setting or "(the start)",
                 _score_text(trial.ndcg_at_k), trial.seconds)  # fmt: skip
        result.trials.append(trial)
        if trial.ndcg_at_k is not None and (result.best_score is None or trial.ndcg_at_k > result.best_score):
            result.best, result.best_score = setting, trial.ndcg_at_k
    return result


@dataclass
class TrialData:
    """What every trial uses: the training interactions it fits on, the scored users' held-out
    items and their seen items, and the bound of the user sample fitted on (None: the whole split)."""

    train: DataFrame
    relevant: DataFrame
    seen: DataFrame
    sample_size: int | None
    cached: list = field(default_factory=list)

    def unpersist(self) -> None:
        """Release every frame cached for the trials."""
        unpersist_all(self.cached)


def trial_data(split: DataFrame, settings: TuneSection, seed: int) -> TrialData:
    """The trials' data from the split: with ``train_users``, the training part of a seeded
    sample of users only, and scored users drawn from that sample."""
    from jobs.ranking import seen_items_of

    sample = sampled_split(split, settings.train_users, seed)
    cached = list(sample.cached)
    try:
        train = sample.split.where("NOT holdout").cache()
        held = relevant_items(sample.split.where("holdout")).cache()
        cached += [train, held]
        relevant = sample_users(held, settings.max_users, seed).cache()
        seen = seen_items_of(train, relevant).cache()
    except BaseException:
        # A failed search keeps the last good setting and the session goes on: free what was cached.
        unpersist_all(cached)
        raise
    return TrialData(train, relevant, seen, sample.sample_size, [*cached, relevant, seen])


def last_good_setting(spark: SparkSession, layout: RunLayout) -> tuple[dict, str] | None:
    """The chosen setting of the newest earlier run that completed and was not held by the
    quality gate, with that run's date; None when there is none."""
    earlier = sorted((name for name in storage.list_names(spark, layout.runs_root) if name < layout.run_date),
                     reverse=True)  # fmt: skip
    for run_date in earlier:
        manifest = storage.read_json(spark, RunLayout(layout.runs_root, run_date).manifest)
        if not manifest or manifest.get("gate", {}).get("passed") is False:
            continue
        setting = (manifest.get("tuning") or {}).get("chosen", {}).get("setting")
        if setting:
            return setting, run_date
    return None


def fallback_setting(spark: SparkSession, cfg: Config, layout: RunLayout, why: str) -> dict:
    """The setting to use when tuning chose none: the last good one, else the train section's."""
    found = last_good_setting(spark, layout)
    if found is None:
        return {
            "setting": tunable(cfg.train),
            "source": CONFIGURED,
            "reason": f"{why}; no earlier good run, so the train section",
        }
    setting, run_date = found
    return {
        "setting": setting,
        "source": LAST_GOOD,
        "from_run": run_date,
        "reason": f"{why}; the last good setting, of run {run_date}",
    }


def chosen_train(cfg: Config, chosen: dict) -> TrainSection:
    """The train section with the chosen setting laid over it."""
    return TrainSection.model_validate({**cfg.train.model_dump(), **chosen["setting"]})


def read_chosen_train(spark: SparkSession, cfg: Config, layout: RunLayout) -> TrainSection:
    """The setting tune chose for this run; refuses when tune has not run."""
    chosen = storage.read_json(spark, layout.tuning_choice)
    if chosen is None:
        raise JobError(f"run {layout.run_date} has no {layout.tuning_choice}: run the tune stage first")
    return chosen_train(cfg, chosen)


class TrialScorer:
    """Scores one ALS setting: fit on the split's training part, NDCG@k on the sampled users.
    Keeps the best model seen, so the winner need not be trained again."""

    def __init__(self, cfg: Config, train: DataFrame, seen: DataFrame, relevant: DataFrame):
        self.cfg, self.train, self.seen, self.relevant = cfg, train, seen, relevant
        self.best_model, self.best_score = None, None

    def __call__(self, setting: dict) -> float:
        from jobs.ranking import als_top_unseen
        from jobs.train import fit_als

        model = fit_als(self.train, chosen_train(self.cfg, {"setting": setting}))
        k = self.cfg.evaluate.k
        top = als_top_unseen(model, self.seen, k, self.cfg.recommend.engine)
        items = top.selectExpr("user_idx", "transform(items, r -> r.item_idx) AS items")
        score = ranking_metrics(items, self.relevant, k)["ndcg_at_k"]
        if self.best_score is None or score > self.best_score:
            self.best_model, self.best_score = model, score
        return score


def search(
    spark: SparkSession, cfg: Config, split: DataFrame, start: dict, layout: RunLayout
) -> tuple[SearchResult, dict]:
    """Run the budgeted search on the split; keep the winner's model when evaluate will score
    the users it was fitted on; return the result and how many users the trials fitted on and scored."""
    from pyspark.sql import functions as F

    settings: TuneSection = cfg.tune
    data = trial_data(split, settings, cfg.evaluate.seed)
    try:
        users = data.relevant.count()
        if users == 0:
            raise EmptyHoldout("the holdout is empty: no user has evaluate.min_user_interactions interactions")
        counts = {"users_scored": users, "users_trained": data.train.agg(F.countDistinct("user_idx")).first()[0],
                  "trained_on": "whole split" if data.sample_size is None else "user sample"}  # fmt: skip
        scorer = TrialScorer(cfg, data.train, data.seen, data.relevant)
        result = coordinate_search(scorer, start, settings.space, settings.trials, settings.time_limit_minutes * 60)
        # evaluate reuses the winner when it scores the users the trials fitted on.
        if scorer.best_model is not None and (data.sample_size is None or cfg.evaluate.on_tune_sample):
            winner = chosen_train(cfg, {"setting": result.best})
            keep_holdout_model(scorer.best_model, layout.holdout_models, winner, data.sample_size)
    finally:
        data.unpersist()
    return result, counts


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Write the shared split, search for the best setting, and record the choice."""
    for output in ("split", "split_settings", "holdout_models", "tuning"):
        storage.delete(spark, layout.path(output))
    if cfg.tune.enabled or cfg.evaluate.enabled:
        split_interactions(spark.read.parquet(layout.interactions), cfg.evaluate).write.parquet(layout.split)
        storage.write_json(spark, layout.split_settings, split_settings(cfg.evaluate))
    report: dict = {"enabled": cfg.tune.enabled, "k": cfg.evaluate.k}
    if not cfg.tune.enabled:
        chosen = fallback_setting(spark, cfg, layout, "tuning is off")
    else:
        found = last_good_setting(spark, layout)
        start = {**tunable(cfg.train), **(found[0] if found else {})}
        chosen = _search_and_choose(spark, cfg, layout, start, report)
    storage.write_json(spark, layout.tuning_choice, chosen)
    log.info("chosen setting (%s): %s - %s", chosen["source"], chosen["setting"], chosen["reason"])
    return {**report, "chosen": chosen}


def _search_and_choose(spark: SparkSession, cfg: Config, layout: RunLayout, start: dict, report: dict) -> dict:
    started = time.monotonic()
    try:
        result, counts = search(spark, cfg, spark.read.parquet(layout.split), start, layout)
    except EmptyHoldout as exc:
        return fallback_setting(spark, cfg, layout, f"nothing to tune on ({exc})")
    except JobError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed search keeps the last good setting
        log.exception("tuning failed")
        return fallback_setting(spark, cfg, layout, f"tuning failed ({type(exc).__name__}: {str(exc)[:300]})")
    report.update(start=start, **counts, stopped_by=result.stopped_by,
                  trials=[trial.as_dict() for trial in result.trials],
                  search_seconds=round(time.monotonic() - started, 3))  # fmt: skip
    if result.best_score is None:
        return fallback_setting(spark, cfg, layout, f"all {len(result.trials)} trials failed")
    baseline = result.trials[0].ndcg_at_k
    winner = next(t for t in result.trials if t.ndcg_at_k == result.best_score)
    why = (f"best NDCG@{cfg.evaluate.k} {result.best_score:.4f} of {len(result.trials)} trials (trial "
           f"{winner.number}; the start scored {_score_text(baseline)}); stopped by {result.stopped_by}")  # fmt: skip
    return {"setting": result.best, "source": TUNED, "ndcg_at_k": result.best_score, "reason": why}


def _score_text(score: float | None) -> str:
    return "nothing (it failed)" if score is None else f"{score:.4f}"


def main(argv: list[str] | None = None) -> int:
    """Run the tune stage for one logical date."""
    return job_main("tune", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
