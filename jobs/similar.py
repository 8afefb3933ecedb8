"""similar: item-to-item lists for every item, the cold items each category can explore, and
how well cold items are reached.

    spark-submit --py-files dist/recs_jobs.zip jobs/similar.py --run-date 2026-11-29

Warm items (at least ``cold_start.min_users`` distinct users) get the exact cosine top-k of
their ALS item factors (the control variant's, or the first ALS variant's) among warm items,
by blocked matrix products in Spark tasks (jobs/topk.py). Cold items (fewer users, or only in
the item metadata) get their nearest warm items by content vectors from the metadata
(jobs/content.py). No item is ever in its own list.

Writes ``similar`` (item_id, rank, similar_item_id, score, method: als or content) and
``cold`` (category, rank, item_id: each category's cold items for exploration slots, items no
one has touched first, then the most recently seen), and reports the cold-start evaluation
(jobs/cold_evaluation.py) for the manifest.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs import storage
from jobs.cold_evaluation import evaluate_cold_start
from jobs.content import content_vectors, nearest_in, to_matrix
from jobs.ranking import task_partitions
from jobs.run_layout import RunLayout
from jobs.runner import job_main
from jobs.topk import nearest_items

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config

SIMILAR_SCHEMA = "item_id string, rank int, similar_item_id string, score double, method string"


def item_activity(interactions: DataFrame, items: DataFrame) -> DataFrame:
    """Per item of the run: item_idx, item_id, users (distinct), first_seen (earliest ts)."""
    from pyspark.sql import functions as F

    activity = interactions.groupBy("item_idx").agg(
        F.countDistinct("user_idx").alias("users"), F.min("ts").alias("first_seen")
    )
    return items.join(activity, "item_idx")


def als_lists(factors: DataFrame, warm: DataFrame, items: DataFrame, k: int, partitions: int) -> DataFrame:
    """SIMILAR_SCHEMA rows for warm items by their ALS factors, among warm items only."""
    from pyspark.sql import functions as F

    warm_factors = factors.withColumnRenamed("id", "item_idx").join(warm.select("item_idx"), "item_idx")
    nearest = nearest_items(warm_factors, k, partitions)
    exploded = nearest.select("item_idx", F.posexplode("similar").alias("position", "entry"))
    ids = items.select(F.col("item_idx").alias("similar_idx"), F.col("item_id").alias("similar_item_id"))
    return (
        exploded.join(items, "item_idx")
        .join(ids, F.col("entry.item_idx") == F.col("similar_idx"))
        .select(
            "item_id",
            (F.col("position") + 1).cast("int").alias("rank"),
            "similar_item_id",
            F.col("entry.score").cast("double").alias("score"),
            F.lit("als").alias("method"),
        )
    )


def content_lists(spark: SparkSession, content, cold_ids: list[str], warm_ids: set[str], k: int) -> DataFrame:
    """SIMILAR_SCHEMA rows for cold items: their nearest warm items by content."""
    import numpy as np

    ids, matrix = content
    rows = {item: row for row, item in enumerate(ids)}
    queries = np.asarray([rows[item] for item in cold_ids if item in rows], dtype=np.int64)
    candidates = np.asarray([rows[item] for item in sorted(warm_ids) if item in rows], dtype=np.int64)
    nearest = nearest_in(matrix, queries, candidates, k) if len(queries) and len(candidates) else {}
    records = [(ids[query], rank, ids[row], score, "content")
               for query, found in nearest.items() for rank, (row, score) in enumerate(found, 1)]  # fmt: skip
    return spark.createDataFrame(records, SIMILAR_SCHEMA)


def cold_by_category(item_meta: DataFrame, activity: DataFrame, min_users: int, per_category: int) -> DataFrame:
    """category, rank, item_id: each category's cold items, untouched ones first, then newest."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cold = item_meta.join(activity.select("item_id", "users", "first_seen"), "item_id", "left").where(
        F.coalesce(F.col("users"), F.lit(0)) < min_users
    )
    per = cold.select("item_id", "first_seen", F.explode("categories").alias("category"))
    order = Window.partitionBy("category").orderBy(F.desc_nulls_first("first_seen"), "item_id")
    ranked = per.withColumn("rank", F.row_number().over(order).cast("int"))
    return ranked.where(F.col("rank") <= per_category).select("category", "rank", "item_id")


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Write the item-to-item lists and the exploration lists; evaluate cold-start reach."""
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import functions as F

    settings = cfg.cold_start
    interactions = spark.read.parquet(layout.interactions)
    items = spark.read.parquet(layout.items)
    activity = item_activity(interactions, items).cache()
    warm = activity.where(F.col("users") >= settings.min_users)
    warm_ids = {row["item_id"] for row in warm.select("item_id").collect()}
    reference = cfg.reference_als_variant()
    lists = spark.createDataFrame([], SIMILAR_SCHEMA)
    if reference is not None:
        factors = ALSModel.load(layout.variant_path("models", reference)).itemFactors
        lists = als_lists(factors, warm, items, settings.similar_n, task_partitions(spark))
    report = {"reference_variant": reference, "warm_items": len(warm_ids)}
    vectors = None
    if storage.exists(spark, layout.item_meta):
        item_meta = spark.read.parquet(layout.item_meta)
        vectors = content_vectors(item_meta)
        cold = cold_by_category(item_meta, activity, settings.min_users, settings.per_category)
        cold.write.mode("overwrite").parquet(layout.cold)
    else:
        storage.delete(spark, layout.cold)
    if vectors is None:
        report["cold_items"] = 0
        report["evaluation"] = {"skipped": "no item metadata with words to compare"}
    else:
        content = to_matrix(vectors)
        cold_ids = sorted(set(content[0]) - warm_ids)
        lists = lists.unionByName(content_lists(spark, content, cold_ids, warm_ids, settings.similar_n))
        report["cold_items"] = len(cold_ids)
        if cfg.evaluate.enabled:
            evaluate = cfg.evaluate
            report["evaluation"] = evaluate_cold_start(
                interactions, items, item_meta, content, evaluate.holdout_fraction, evaluate.k, evaluate.seed
            )
    lists.write.mode("overwrite").parquet(layout.similar)
    written = spark.read.parquet(layout.similar)
    report["output"] = {row["method"]: row["count"] for row in written.groupBy("method").count().collect()}
    activity.unpersist()
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the similar stage for one logical date."""
    return job_main("similar", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
