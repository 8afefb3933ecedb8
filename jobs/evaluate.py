"""evaluate: hold out each user's latest interactions, train each variant of the run on the
rest, and score every variant and a popularity baseline on the same split.

    spark-submit --py-files dist/recs_jobs.zip jobs/evaluate.py --run-date 2026-11-29

Reports precision@k, recall@k, NDCG@k, MAP@k and catalogue coverage per variant and for
"most popular unseen items"; ``als`` repeats the control's figures (the first ALS variant's
when the control is not ALS). Without timestamps the holdout is a seeded random one.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs.metrics import catalog_coverage, ranking_metrics
from jobs.ranking import item_popularity, popular_candidates, seen_items, top_unseen, variant_top
from jobs.run_layout import RunLayout
from jobs.runner import JobError, job_main
from jobs.train import fit_als

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config


def mark_holdout(interactions: DataFrame, fraction: float, min_user_interactions: int, seed: int) -> DataFrame:
    """Add ``holdout`` (bool): each user's latest floor(n * fraction) interactions, at least one,
    for users with at least ``min_user_interactions``. Ties in time break by a seeded hash."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    tie_break = F.xxhash64(F.lit(int(seed)), "user_idx", "item_idx")
    latest_first = Window.partitionBy("user_idx").orderBy(F.desc_nulls_last("ts"), tie_break)
    per_user = Window.partitionBy("user_idx")
    ranked = interactions.select(
        "*", F.row_number().over(latest_first).alias("_recency"), F.count(F.lit(1)).over(per_user).alias("_n")
    )
    held = F.greatest(F.floor(F.col("_n") * F.lit(float(fraction))), F.lit(1))
    holdout = (F.col("_n") >= F.lit(int(min_user_interactions))) & (F.col("_recency") <= held)
    return ranked.select(*interactions.columns, holdout.alias("holdout"))


def relevant_items(holdout: DataFrame) -> DataFrame:
    """Per user, the held-out item indices: user_idx, relevant."""
    from pyspark.sql import functions as F

    return holdout.groupBy("user_idx").agg(F.collect_set("item_idx").alias("relevant"))


def item_arrays(top: DataFrame) -> DataFrame:
    """Turn ranked (item_idx, score) structs into plain item arrays: user_idx, items."""
    from pyspark.sql import functions as F

    return top.select("user_idx", F.expr("transform(items, r -> r.item_idx)").alias("items"))


def score_recommender(top: DataFrame, relevant: DataFrame, k: int, catalog_size: int) -> dict:
    """Ranking metrics and coverage of one recommender's top-k lists."""
    items = item_arrays(top).cache()
    result = ranking_metrics(items, relevant, k)
    result["coverage"] = catalog_coverage(items, catalog_size, k)
    items.unpersist()
    return result


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Split, fit, and score ALS and popularity on this run's prepared interactions."""
    settings = cfg.evaluate
    if not settings.enabled:
        return {"enabled": False}
    k = settings.k
    marked = mark_holdout(
        spark.read.parquet(layout.interactions),
        settings.holdout_fraction,
        settings.min_user_interactions,
        settings.seed,
    ).cache()
    train, holdout = marked.where("NOT holdout"), marked.where("holdout")
    relevant = relevant_items(holdout).cache()
    if relevant.count() == 0:
        raise JobError("evaluation holdout is empty: no user has evaluate.min_user_interactions interactions")
    seen = seen_items(train).join(relevant.select("user_idx"), "user_idx").cache()
    catalog_size = train.select("item_idx").distinct().count()
    popularity = item_popularity(train).cache()
    popular_top = top_unseen(popular_candidates(popularity, seen, k), seen, k)
    variants = {}
    for variant in cfg.variants():
        model = fit_als(train, variant.train) if variant.model == "als" else None
        variants[variant.name] = score_recommender(
            variant_top(variant, model, popularity, seen, k), relevant, k, catalog_size
        )
    report = {
        "k": k,
        "split": {
            "method": "latest_by_timestamp" if _has_timestamps(marked) else "seeded_random",
            "holdout_fraction": settings.holdout_fraction,
            "train_pairs": train.count(),
            "holdout_pairs": holdout.count(),
            "users_evaluated": relevant.count(),
            "catalog_items": catalog_size,
        },
        "popularity": score_recommender(popular_top, relevant, k, catalog_size),
        "variants": variants,
    }
    reference = cfg.reference_als_variant()
    if reference is not None:
        report["als"] = variants[reference]
    marked.unpersist()
    popularity.unpersist()
    relevant.unpersist()
    seen.unpersist()
    return report


def _has_timestamps(interactions: DataFrame) -> bool:
    return interactions.where("ts IS NOT NULL").limit(1).count() > 0


def main(argv: list[str] | None = None) -> int:
    """Run the evaluate stage for one logical date."""
    return job_main("evaluate", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
