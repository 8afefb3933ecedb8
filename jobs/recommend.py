"""recommend: top-N unseen items per known user in every variant of the run, plus the popular
lists used as fallback.

    spark-submit --py-files dist/recs_jobs.zip jobs/recommend.py --run-date 2026-11-29

Writes ``recommendations`` (variant, user_id, items: an array of struct<item_id, score>, best
first; partitioned by variant), one row per user and variant with the original string ids, and
``popular`` (scope, category, rank, item_id, score): scope ``all`` is the overall list, scope
``category`` one list per category when item metadata was given. Every variant shares the
prepared data and the seen items, read once.

Also ``user_context`` (user_id, seen, top_categories): which items of the popular lists and
which cold items each user has seen, so the API can fill up or explore without them, and each
user's strongest categories, for exploration slots.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs import storage
from jobs.ranking import item_popularity, seen_items, variant_top
from jobs.run_layout import RunLayout
from jobs.runner import job_main

if TYPE_CHECKING:
    import numpy as np
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config


NAMED_SCHEMA = "user_idx int, items array<struct<item_id:string,score:double>>"


def named_lists(top: DataFrame, users: DataFrame, shared: Broadcast, variant: str) -> DataFrame:
    """Per-user ranked (item_idx, score) arrays with their ids, as the run folder keeps them:
    variant, user_id, items (array of struct<item_id, score>), best first; users with an empty
    list are left out. ``shared``: the run's item_id_lookup, broadcast once for every variant;
    lists are never exploded and regrouped."""
    from pyspark.sql import functions as F

    def name_partition(batches):
        position_of, ids = shared.value
        for batch in batches:
            yield named_batch(batch, position_of, ids)

    named = top.where(F.size("items") > 0).select("user_idx", "items").mapInArrow(name_partition, NAMED_SCHEMA)
    return named.join(users, "user_idx").select(F.lit(variant).alias("variant"), "user_id", "items")


def item_id_lookup(items: DataFrame) -> tuple[np.ndarray, object]:
    """(position of each item_idx, -1 where there is none; the item ids as an Arrow array), from
    the run's item index, brought to the driver: one id per catalogue item."""
    import numpy as np

    table = items.select("item_idx", "item_id").toArrow()
    indices = table.column("item_idx").to_numpy()
    position_of = np.full(int(indices.max()) + 1 if len(indices) else 0, -1, dtype=np.int64)
    position_of[indices] = np.arange(len(indices))
    return position_of, table.column("item_id").combine_chunks()


def named_batch(batch, position_of, ids):
    """An Arrow batch of user_idx, items (struct<item_idx, score>) with item ids in place of indices."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = batch.column("items")
    entries = pc.list_flatten(lists)
    indices = entries.field("item_idx").to_numpy(zero_copy_only=False)
    known = (indices >= 0) & (indices < len(position_of))
    positions = position_of[np.where(known, indices, 0)] if len(position_of) else np.full(len(indices), -1)
    if not known.all() or (positions < 0).any():
        raise ValueError("a ranked list names an item_idx that is not in the run's item index")
    named = pa.StructArray.from_arrays(
        [ids.take(pa.array(positions)), pc.cast(entries.field("score"), pa.float64())], names=["item_id", "score"]
    )
    offsets = lists.offsets.to_numpy()
    lists = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), named)
    return pa.RecordBatch.from_arrays([batch.column("user_idx").cast(pa.int32()), lists], names=["user_idx", "items"])


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


TOP_CATEGORIES = 3


def listed_items(popular: DataFrame, interactions: DataFrame, items: DataFrame, min_users: int) -> DataFrame:
    """item_id of every item a filled-up or exploring answer may draw on: the popular lists'
    items and the cold ones (fewer than ``min_users`` distinct users)."""
    from pyspark.sql import functions as F

    users = interactions.groupBy("item_idx").agg(F.countDistinct("user_idx").alias("users"))
    cold = users.where(F.col("users") < min_users).join(items, "item_idx").select("item_id")
    return popular.select("item_id").unionByName(cold).distinct()


def user_context(
    interactions: DataFrame, users: DataFrame, items: DataFrame, listed: DataFrame, item_meta: DataFrame | None
) -> DataFrame:
    """Per user: the ``listed`` items (popular and cold; listed_items) they have seen, so that
    answers are never filled or explored with them (seen), and their TOP_CATEGORIES strongest
    categories by interactions, ties by name (top_categories)."""
    from pyspark.sql import functions as F

    with_ids = interactions.select("user_idx", "item_idx").join(items, "item_idx")
    seen = (
        with_ids.join(F.broadcast(listed), "item_id")
        .groupBy("user_idx")
        .agg(F.array_sort(F.collect_set("item_id")).alias("seen"))
    )
    context = users.join(seen, "user_idx", "left")
    empty = F.array().cast("array<string>")
    strongest = empty
    if item_meta is not None:
        context = context.join(strongest_categories(with_ids, item_meta), "user_idx", "left")
        strongest = F.coalesce(F.col("top_categories"), empty)
    return context.select("user_id", F.coalesce(F.col("seen"), empty).alias("seen"), strongest.alias("top_categories"))


def strongest_categories(with_ids: DataFrame, item_meta: DataFrame) -> DataFrame:
    """user_idx, top_categories: each user's TOP_CATEGORIES categories with most interactions."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    per_category = with_ids.join(item_meta.select("item_id", F.explode("categories").alias("category")), "item_id")
    counts = per_category.groupBy("user_idx", "category").count()
    order = Window.partitionBy("user_idx").orderBy(F.desc("count"), "category")
    ranked = counts.withColumn("position", F.row_number().over(order)).where(F.col("position") <= TOP_CATEGORIES)
    ordered = F.array_sort(F.collect_list(F.struct("position", "category")))
    return ranked.groupBy("user_idx").agg(F.transform(ordered, lambda c: c["category"]).alias("top_categories"))


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Write this run's recommendations and popular lists; return their counts."""
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import functions as F

    n, popular_n = cfg.recommend.top_n, cfg.recommend.popular_n
    interactions = spark.read.parquet(layout.interactions)
    users, items = spark.read.parquet(layout.users), spark.read.parquet(layout.items)
    seen = seen_items(interactions).cache()
    popularity = item_popularity(interactions).cache()
    variants = cfg.variants()
    lists, item_ids = None, spark.sparkContext.broadcast(item_id_lookup(items))
    for variant in variants:
        model = ALSModel.load(layout.variant_path("models", variant.name)) if variant.model == "als" else None
        top = variant_top(variant, model, popularity, seen, n, cfg.recommend.engine)
        named = named_lists(top, users, item_ids, variant.name)
        lists = named if lists is None else lists.unionByName(named)
    lists.write.mode("overwrite").partitionBy("variant").parquet(layout.recommendations)
    item_ids.unpersist()
    seen.unpersist()

    popular = overall_popular(popularity, items, popular_n)
    has_meta = storage.exists(spark, layout.item_meta)
    if has_meta:
        popular = popular.unionByName(
            category_popular(popularity, items, spark.read.parquet(layout.item_meta), popular_n)
        )
    popular.write.mode("overwrite").parquet(layout.popular)
    item_meta = spark.read.parquet(layout.item_meta) if has_meta else None
    listed = listed_items(spark.read.parquet(layout.popular), interactions, items, cfg.cold_start.min_users)
    context = user_context(interactions, users, items, listed, item_meta)
    context.write.mode("overwrite").parquet(layout.user_context)

    popularity.unpersist()
    written = spark.read.parquet(layout.recommendations)
    length = F.size("items")
    lengths = written.agg(
        F.countDistinct("user_id").alias("users"),
        F.count(F.lit(1)).alias("user_lists"),
        F.sum(length).alias("rows"),
        F.min(length).alias("shortest"),
        F.sum((length < n).cast("int")).alias("short"),
    ).first()
    saved_popular = spark.read.parquet(layout.popular)
    return {
        "top_n": n,
        "variants": [variant.name for variant in variants],
        "experiment": cfg.experiment_definition(),
        "output": {
            "users": int(lengths["users"] or 0),
            "user_lists": int(lengths["user_lists"] or 0),
            "rows": int(lengths["rows"] or 0),
            "shortest_list": int(lengths["shortest"] or 0),
            "lists_shorter_than_n": int(lengths["short"] or 0),
            "popular_overall": saved_popular.where("scope = 'all'").count(),
            "popular_categories": saved_popular.where("scope = 'category'").select("category").distinct().count(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the recommend stage for one logical date."""
    return job_main("recommend", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
