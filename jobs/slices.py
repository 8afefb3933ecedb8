"""Evaluation by slice: the same ranking metrics for parts of the users and of the items.

- Users by activity, counted in the training part of the split: ``cold`` (fewer than
  ``slices.light_min`` interactions), ``heavy`` (``slices.heavy_min`` or more), ``light``.
- Items by popularity: the ``head`` is the most popular items that together hold
  ``slices.head_share`` of the training interactions (the item that crosses the line
  included), the ``tail`` the rest.
- Categories, with item metadata.

For an item slice S, each user's relevant set is cut to its items in S (users with none are
left out) and the list is scored as it is: recall@k for ``tail`` says how many held-out tail
items the lists found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.metrics import mean_metrics, metrics_of, per_user_metrics

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from conf.schema import SliceSection

ACTIVITY_SLICES = ("cold", "light", "heavy")
POPULARITY_SLICES = ("head", "tail")


def item_stats(train: DataFrame, categories: DataFrame | None, head_share: float) -> DataFrame:
    """Per training item: item_idx, users (distinct users), head (bool), categories (or null)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    users = train.groupBy("item_idx").agg(F.countDistinct("user_idx").alias("users")).cache()
    # A running sum over all items in one partition: fine for catalogues of a few million items.
    most_first = Window.orderBy(F.desc("users"), "item_idx")
    before = F.coalesce(F.sum("users").over(most_first.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0))
    total = users.agg(F.sum("users")).first()[0] or 0
    stats = users.select("item_idx", "users", (before < F.lit(head_share * total)).alias("head"))
    if categories is None:
        return stats.withColumn("categories", F.lit(None).cast("array<string>"))
    return stats.join(categories.select("item_idx", "categories"), "item_idx", "left")


def user_activity(train: DataFrame, settings: SliceSection) -> DataFrame:
    """Per training user: user_idx, activity (cold, light or heavy)."""
    from pyspark.sql import functions as F

    counts = train.groupBy("user_idx").agg(F.count(F.lit(1)).alias("n"))
    activity = (
        F.when(F.col("n") < settings.light_min, "cold")
        .when(F.col("n") >= settings.heavy_min, "heavy")
        .otherwise("light")
    )
    return counts.select("user_idx", activity.alias("activity"))


def by_activity(per_user: DataFrame, activity: DataFrame) -> dict:
    """Mean metrics per user activity slice (``per_user`` from jobs.metrics.per_user_metrics)."""
    rows = mean_metrics(per_user.join(activity, "user_idx", "left").fillna("cold", ["activity"]), ("activity",))
    found = {row["activity"]: metrics_of(row) for row in rows.collect()}
    return {name: found.get(name, metrics_of(None)) for name in ACTIVITY_SLICES}


def item_slices(relevant: DataFrame, stats: DataFrame, with_categories: bool) -> DataFrame:
    """Each user's relevant items cut per item slice: user_idx, slice, relevant. Slices are
    ``head``, ``tail`` and ``category:<name>``."""
    from pyspark.sql import functions as F

    held = relevant.select("user_idx", F.explode("relevant").alias("item_idx")).join(stats, "item_idx", "left")
    popularity = F.when(F.col("head"), F.lit("head")).otherwise(F.lit("tail"))
    labels = F.array(popularity)
    if with_categories:
        in_categories = F.transform(
            F.coalesce("categories", F.array().cast("array<string>")), lambda c: F.concat(F.lit("category:"), c)
        )
        labels = F.concat(labels, in_categories)
    labelled = held.select("user_idx", "item_idx", F.explode(labels).alias("slice"))
    return labelled.groupBy("user_idx", "slice").agg(F.collect_set("item_idx").alias("relevant"))


def by_item_slice(recommended: DataFrame, relevant: DataFrame, stats: DataFrame, k: int, with_categories: bool) -> dict:
    """Mean metrics per item slice: {"items": {head, tail}, "categories": {name: ...}}."""
    cut = item_slices(relevant, stats, with_categories)
    rows = mean_metrics(per_user_metrics(recommended, cut, k, keys=("slice",)), ("slice",)).collect()
    found = {row["slice"]: metrics_of(row) for row in rows}
    categories = {name.removeprefix("category:"): found[name] for name in sorted(found) if name.startswith("category:")}
    return {
        "items": {name: found.get(name, metrics_of(None)) for name in POPULARITY_SLICES},
        "categories": categories if with_categories else None,
    }
