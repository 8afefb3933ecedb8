"""What a recommender's top-k lists are like beyond hitting the held-out items, each at the
same k cut as the ranking metrics. With U training users, p_i the number of them who had item i
and C_i item i's categories:

    coverage@k        share of the catalogue in at least one list
    novelty@k         mean over users of the mean over their list of -log2(p_i / U): higher is
                      less obvious
    arp@k             average recommended popularity: mean over users of the mean p_i / U
    head_share@k      share of all listed items that are in the head (jobs/slices.py)
    diversity@k       intra-list diversity over categories: mean over users of the mean over
                      pairs (i, j) in their list of 1 - |C_i ∩ C_j| / |C_i ∪ C_j|, pairs of
                      items that both have categories; null without item metadata

``item_stats``: item_idx, users (p_i), head (bool), categories (array<string>, may be null).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from jobs.metrics import catalog_coverage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def listed_items(recommended: DataFrame, k: int) -> DataFrame:
    """One row per listed item: user_idx, pos (0-based), item_idx; lists cut at k."""
    from pyspark.sql import functions as F

    return recommended.select("user_idx", F.posexplode(F.slice("items", 1, int(k))).alias("pos", "item_idx"))


def beyond_accuracy(
    recommended: DataFrame, item_stats: DataFrame, users: int, catalog_size: int, k: int, with_categories: bool
) -> dict:
    """Coverage, novelty, ARP, head share and (with categories) diversity of top-k lists."""
    from pyspark.sql import functions as F

    listed = listed_items(recommended, k).join(item_stats, "item_idx", "left").cache()
    share = F.coalesce(F.col("users"), F.lit(1)) / F.lit(float(max(users, 1)))
    per_user = listed.groupBy("user_idx").agg(
        F.avg(-F.log2(share)).alias("novelty"), F.avg(share).alias("arp"),
        F.sum(F.coalesce(F.col("head").cast("int"), F.lit(0))).alias("head"), F.count(F.lit(1)).alias("listed"),
    )  # fmt: skip
    row = per_user.agg(
        F.avg("novelty").alias("novelty"), F.avg("arp").alias("arp"),
        (F.sum("head") / F.sum("listed")).alias("head_share"),
    ).first()  # fmt: skip
    result = {
        "coverage": catalog_coverage(recommended, catalog_size, k),
        "novelty": _number(row["novelty"]),
        "arp": _number(row["arp"]),
        "head_share": _number(row["head_share"]),
        "diversity": intra_list_diversity(listed) if with_categories else None,
    }
    listed.unpersist()
    return result


def intra_list_diversity(listed: DataFrame) -> float | None:
    """Mean over users of the mean category distance (1 - Jaccard) over their list's pairs."""
    from pyspark.sql import functions as F

    known = listed.where(F.size(F.coalesce("categories", F.array())) > 0).select("user_idx", "pos", "categories")
    a, b = known.alias("a"), known.alias("b")
    pairs = a.join(b, (F.col("a.user_idx") == F.col("b.user_idx")) & (F.col("a.pos") < F.col("b.pos")))
    shared = F.size(F.array_intersect("a.categories", "b.categories"))
    either = F.size(F.array_union("a.categories", "b.categories"))
    distance = F.lit(1.0) - shared / either
    per_user = pairs.groupBy(F.col("a.user_idx").alias("user_idx")).agg(F.avg(distance).alias("diversity"))
    return _number(per_user.agg(F.avg("diversity")).first()[0], none_when_missing=True)


def _number(value, none_when_missing: bool = False) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None if none_when_missing else 0.0
    return float(value)
