"""recommend: top-N unseen items per known user, plus the popular lists used as fallback.

    spark-submit --py-files dist/recs_jobs.zip jobs/recommend.py --run-date 2026-11-29

Writes ``recommendations`` (user_id, rank, item_id, score) with the original string ids, and
``popular`` (scope, category, rank, item_id, score): scope ``all`` is the overall list, scope
``category`` one list per category when item metadata was given.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs import storage
from jobs.ranking import als_candidates, item_popularity, seen_items, top_unseen
from jobs.run_layout import RunLayout
from jobs.runner import job_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config


def ranked_rows(top: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Explode per-user (item_idx, score) arrays into user_id, rank (1-based), item_id, score."""
    from pyspark.sql import functions as F

    exploded = top.select("user_idx", F.posexplode("items").alias("pos", "entry"))
    return (
        exploded.join(users, "user_idx")
        .join(items, exploded["entry.item_idx"] == items["item_idx"])
        .select(
            "user_id",
            (F.col("pos") + 1).cast("int").alias("rank"),
            "item_id",
            F.col("entry.score").cast("double").alias("score"),
        )
    )


def overall_popular(popularity: DataFrame, items: DataFrame, n: int) -> DataFrame:
    """The n most popular items overall, ties broken by item id, as ``popular`` rows with scope ``all``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    top = popularity.join(items, "item_idx").orderBy(F.desc("score"), F.asc("item_id")).limit(int(n))
    order = Window.orderBy(F.desc("score"), F.asc("item_id"))
    return top.select(
        F.lit("all").alias("scope"),
        F.lit(None).cast("string").alias("category"),
        F.row_number().over(order).cast("int").alias("rank"),
        "item_id",
        "score",
    )


def category_popular(popularity: DataFrame, items: DataFrame, item_meta: DataFrame, n: int) -> DataFrame:
    """The n most popular items of each category, as ``popular`` rows with scope ``category``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    per_category = popularity.join(items, "item_idx").join(
        item_meta.select("item_id", F.explode("categories").alias("category")), "item_id"
    )
    order = Window.partitionBy("category").orderBy(F.desc("score"), F.asc("item_id"))
    ranked = per_category.select("category", "item_id", "score", F.row_number().over(order).cast("int").alias("rank"))
    return ranked.where(F.col("rank") <= int(n)).select(
        F.lit("category").alias("scope"), "category", "rank", "item_id", "score"
    )


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Write this run's recommendations and popular lists; return their counts."""
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import functions as F

    n, popular_n = cfg.recommend.top_n, cfg.recommend.popular_n
    interactions = spark.read.parquet(layout.interactions)
    users, items = spark.read.parquet(layout.users), spark.read.parquet(layout.items)
    seen = seen_items(interactions).cache()
    top = top_unseen(als_candidates(ALSModel.load(layout.model), seen, n), seen, n)
    ranked_rows(top, users, items).write.mode("overwrite").parquet(layout.recommendations)
    seen.unpersist()

    popularity = item_popularity(interactions)
    popular = overall_popular(popularity, items, popular_n)
    has_meta = storage.exists(spark, layout.item_meta)
    if has_meta:
        popular = popular.unionByName(
            category_popular(popularity, items, spark.read.parquet(layout.item_meta), popular_n)
        )
    popular.write.mode("overwrite").parquet(layout.popular)

    written = spark.read.parquet(layout.recommendations)
    lengths = (
        written.groupBy("user_id")
        .count()
        .agg(
            F.count(F.lit(1)).alias("users"),
            F.min("count").alias("shortest"),
            F.sum((F.col("count") < n).cast("int")).alias("short"),
        )
        .first()
    )
    saved_popular = spark.read.parquet(layout.popular)
    return {
        "top_n": n,
        "output": {
            "users": int(lengths["users"] or 0),
            "rows": written.count(),
            "shortest_list": int(lengths["shortest"] or 0),
            "users_with_fewer_than_n": int(lengths["short"] or 0),
            "popular_overall": saved_popular.where("scope = 'all'").count(),
            "popular_categories": saved_popular.where("scope = 'category'").select("category").distinct().count(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the recommend stage for one logical date."""
    return job_main("recommend", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
