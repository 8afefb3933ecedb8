"""evaluate: score every variant of the run and a popularity baseline on the holdout split that
tune wrote, overall, by slice and beyond accuracy.

    spark-submit --py-files dist/recs_jobs.zip jobs/evaluate.py --run-date 2026-11-29

Each ALS variant is scored with the model trained on the split's training part for its
setting (the tune stage's chosen setting, with the variant's own changes). With
``evaluate.on_tune_sample`` (the default) and tuning on, every figure is of the users tune
fitted its trials on (the seeded sample of ``tune.train_users``) and their training
interactions, and the winner's model tune kept is loaded rather than trained again; otherwise
each setting is fitted on the whole split (tune kept the winner's only when its trials fitted
on every user). A setting no stage trained is trained here once and kept.
Reports precision@k, recall@k, NDCG@k, MAP@k, coverage, novelty, average recommended
popularity, head share and diversity (jobs/beyond_accuracy.py), and the ranking metrics per
user activity, item popularity and category (jobs/slices.py); ``als`` repeats the reference
ALS variant's figures. Without timestamps the holdout is a seeded random one.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs import storage
from jobs.beyond_accuracy import beyond_accuracy
from jobs.holdout import (
    keep_holdout_model,
    load_holdout_model,
    relevant_items,
    sampled_split,
    split_method,
    split_settings,
    unpersist_all,
)
from jobs.metrics import mean_metrics, metrics_of, per_user_metrics
from jobs.ranking import item_popularity, popular_candidates, seen_items_of, top_unseen, variant_top
from jobs.run_layout import RunLayout
from jobs.runner import JobError, job_main
from jobs.slices import by_activity, by_item_slice, item_stats, user_activity

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config, TrainSection


class HoldoutData:
    """What every recommender is scored against: the split's training part and held-out items,
    the users' seen items, popularity, slices and the item statistics."""

    def __init__(self, spark: SparkSession, cfg: Config, layout: RunLayout):
        check_split(spark, cfg, layout)
        split = spark.read.parquet(layout.split)
        self.method = split_method(split)
        # Tune's sample only when tune ran: with tuning off there is no sampled model to score.
        sample_bound = cfg.tune.train_users if cfg.evaluate.on_tune_sample and cfg.tune.enabled else None
        self.sample = sampled_split(split, sample_bound, cfg.evaluate.seed)
        split = self.sample.split
        self.train = split.where("NOT holdout").cache()
        self.relevant = relevant_items(split.where("holdout")).cache()
        self.users = self.relevant.count()
        if self.users == 0:
            raise JobError("evaluation holdout is empty: no user has evaluate.min_user_interactions interactions")
        self.seen = seen_items_of(self.train, self.relevant).cache()
        self.popularity = item_popularity(self.train).cache()
        self.catalog_size = self.popularity.count()
        self.train_users = self.train.select("user_idx").distinct().count()
        categories = _item_categories(spark, layout)
        self.with_categories = categories is not None
        self.item_stats = item_stats(self.train, categories, cfg.evaluate.slices.head_share).cache()
        self.activity = user_activity(self.train, cfg.evaluate.slices).cache()
        self.split_counts = {"train_pairs": self.train.count(), "holdout_pairs": split.where("holdout").count()}

    def score(self, top: DataFrame, k: int) -> dict:
        """Every figure for one recommender's top-k lists (user_idx, items of item_idx, score)."""
        items = top.selectExpr("user_idx", "transform(items, r -> r.item_idx) AS items").cache()
        per_user = per_user_metrics(items, self.relevant, k).cache()
        result = metrics_of(mean_metrics(per_user).first())
        result.update(beyond_accuracy(items, self.item_stats, self.train_users, self.catalog_size, k,
                                      self.with_categories))  # fmt: skip
        sliced = by_item_slice(items, self.relevant, self.item_stats, k, self.with_categories)
        result["slices"] = {"users": by_activity(per_user, self.activity), **sliced}
        per_user.unpersist()
        items.unpersist()
        return result

    def release(self) -> None:
        """Drop the cached frames."""
        unpersist_all([self.train, self.relevant, self.seen, self.popularity, self.item_stats, self.activity])
        self.sample.unpersist()


def check_split(spark: SparkSession, cfg: Config, layout: RunLayout) -> None:
    """Refuse a split made with other evaluate settings than this run's (re-run tune first)."""
    made_with = storage.read_json(spark, layout.split_settings)
    wanted = split_settings(cfg.evaluate)
    if made_with is None:
        raise JobError(f"run {layout.run_date} has no holdout split: run the tune stage first")
    if made_with != wanted:
        raise JobError(
            f"run {layout.run_date}'s holdout split was made with {made_with}, not this config's {wanted}: "
            "run the tune stage again first"
        )


def _item_categories(spark: SparkSession, layout: RunLayout) -> DataFrame | None:
    meta = storage.read_parquet_if_complete(spark, layout.item_meta)
    if meta is None:
        return None
    return meta.join(spark.read.parquet(layout.items), "item_id").select("item_idx", "categories")


def holdout_model(data: HoldoutData, params: TrainSection, layout: RunLayout):
    """The model of this setting trained on the split: the one kept (by tune), else trained and kept.
    Returns the model and whether it was reused."""
    from jobs.train import fit_als

    model = load_holdout_model(layout.holdout_models, params, data.sample.sample_size)
    if model is not None:
        return model, True
    model = fit_als(data.train, params)
    keep_holdout_model(model, layout.holdout_models, params, data.sample.sample_size)
    return model, False


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Score each variant and popularity on the shared split."""
    from jobs.tune import read_chosen_train

    settings = cfg.evaluate
    if not settings.enabled:
        return {"enabled": False}
    k = settings.k
    data = HoldoutData(spark, cfg, layout)
    variants, models = {}, {}
    for variant in cfg.variants(read_chosen_train(spark, cfg, layout)):
        model, reused = holdout_model(data, variant.train, layout) if variant.model == "als" else (None, None)
        top = variant_top(variant, model, data.popularity, data.seen, k, cfg.recommend.engine)
        variants[variant.name] = data.score(top, k)
        models[variant.name] = {"reused": reused} if reused is not None else None
    popular_top = top_unseen(popular_candidates(data.popularity, data.seen, k), data.seen, k)
    report = {
        "k": k,
        "split": {
            "method": data.method,
            "holdout_fraction": settings.holdout_fraction,
            **data.split_counts,
            "users_evaluated": data.users,
            "user_sample": data.sample.sample_size,
            "catalog_items": data.catalog_size,
        },
        "popularity": data.score(popular_top, k),
        "variants": variants,
        "holdout_models": models,
    }
    reference = cfg.reference_als_variant()
    if reference is not None:
        report["als"] = variants[reference]
    data.release()
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the evaluate stage for one logical date."""
    return job_main("evaluate", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
