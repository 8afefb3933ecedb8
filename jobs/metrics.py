"""Ranking metrics over per-user top-k arrays, with binary relevance.

For a user with ranked list r_1..r_k and relevant set R (both item indices):

    precision@k = |top-k ∩ R| / k
    recall@k    = |top-k ∩ R| / |R|
    NDCG@k      = DCG / IDCG, DCG = sum over hits at rank i of 1/log2(i + 1),
                  IDCG = sum over i = 1..min(|R|, k) of 1/log2(i + 1)
    MAP@k       = (sum over hits at rank i of precision@i) / min(|R|, k)

Each is averaged over the users that have a relevant set; a user with no recommendations
scores 0. Catalogue coverage is the share of catalogue items that appear in any top-k list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

METRIC_NAMES = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")


def per_user_metrics(recommended: DataFrame, relevant: DataFrame, k: int, keys: tuple[str, ...] = ()) -> DataFrame:
    """Per-user metrics for users with at least one relevant item: user_idx, ``keys`` (more
    columns of ``relevant`` carried through, e.g. a slice) and one column per metric.

    ``recommended``: user_idx, items (array<int>, best first); ``relevant``: user_idx, relevant (array<int>)."""
    from pyspark.sql import functions as F

    k = int(k)
    carried = ["user_idx", *keys]
    joined = (
        relevant.where(F.size("relevant") > 0)
        .join(recommended, "user_idx", "left")
        .select(
            *carried,
            "relevant",
            F.expr(f"slice(coalesce(items, array()), 1, {k})").alias("top"),
        )
    )
    with_hits = joined.select(
        *carried,
        "relevant",
        F.expr("transform(top, x -> IF(array_contains(relevant, x), 1, 0))").alias("hits"),
    )
    return with_hits.select(
        *carried,
        F.expr(f"aggregate(hits, 0, (acc, h) -> acc + h) / {k}").alias("precision_at_k"),
        F.expr("aggregate(hits, 0, (acc, h) -> acc + h) / size(relevant)").alias("recall_at_k"),
        F.expr(
            "aggregate(transform(hits, (h, i) -> h / log2(i + 2)), 0D, (acc, g) -> acc + g)"
            f" / aggregate(sequence(1, least(size(relevant), {k})), 0D, (acc, i) -> acc + 1 / log2(i + 1))"
        ).alias("ndcg_at_k"),
        F.expr(
            "aggregate(transform(hits, (h, i) -> h * aggregate(slice(hits, 1, i + 1), 0, (a, x) -> a + x) / (i + 1)),"
            f" 0D, (acc, p) -> acc + p) / least(size(relevant), {k})"
        ).alias("map_at_k"),
    )


def ranking_metrics(recommended: DataFrame, relevant: DataFrame, k: int) -> dict:
    """Mean precision, recall, NDCG and MAP at k over the users in ``relevant``, plus the user count."""
    row = mean_metrics(per_user_metrics(recommended, relevant, k)).first()
    return metrics_of(row)


def mean_metrics(per_user: DataFrame, by: tuple[str, ...] = ()) -> DataFrame:
    """Each metric's mean, and the number of users, over per-user rows (grouped ``by``)."""
    from pyspark.sql import functions as F

    means = [F.count(F.lit(1)).alias("users"), *[F.avg(name).alias(name) for name in METRIC_NAMES]]
    return per_user.groupBy(*by).agg(*means)


def metrics_of(row) -> dict:
    """One row of ``mean_metrics`` as a plain dict; no figures (None) when it counts no users."""
    if not row or not row["users"]:
        return {**dict.fromkeys(METRIC_NAMES), "users": 0}
    return {**{name: float(row[name] or 0.0) for name in METRIC_NAMES}, "users": int(row["users"])}


def catalog_coverage(recommended: DataFrame, catalog_size: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top-k."""
    from pyspark.sql import functions as F

    if catalog_size <= 0:
        return 0.0
    shown = recommended.select(F.explode(F.slice("items", 1, int(k))).alias("item_idx")).distinct().count()
    return shown / catalog_size
