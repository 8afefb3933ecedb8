"""A run folder's estimated size in Redis, for the publisher's size check (store.memory_budget).

    footprint = run_footprint(spark, layout, KeyLayout("recs"), run_id)
    footprint.redis_bytes

Each output the publish job loads gets one columnar aggregate (list, pair and string counts,
UTF-8 bytes of the ids, the printed width of a sample of scores); only those totals reach the
driver, never a list.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from jobs import storage
from jobs.ranking import stored_rows
from jobs.run_layout import RunLayout
from store.contract import KeyLayout
from store.memory_budget import (
    KeyGroup,
    ListTotals,
    RunFootprint,
    document_keys,
    similar_list_keys,
    user_list_keys,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# Scores whose printed width is measured, at most: enough for a mean within a fraction of a character.
SCORE_SAMPLE = 10_000


def run_footprint(spark: SparkSession, layout: RunLayout, keys: KeyLayout, run_id: str) -> RunFootprint:
    """The run's user lists, item-to-item lists and documents as the publish job would write them."""
    from pyspark.sql import functions as F

    stored = spark.read.parquet(layout.recommendations)
    users = ranked_totals(stored_rows(stored), "item_id", F.concat_ws(":", "variant", "user_id"), pairs=_pairs(stored))
    context = storage.read_parquet_if_complete(spark, layout.user_context)
    if context is not None:
        users = _with_context(users, context)
    similar = storage.read_parquet_if_complete(spark, layout.similar)
    similar_keys = (
        similar_list_keys(keys, run_id, ranked_totals(similar, "similar_item_id", F.col("item_id"), "method"))
        if similar is not None
        else KeyGroup(0, 0)
    )
    popular = ranked_totals(spark.read.parquet(layout.popular), "item_id", F.coalesce("category", F.lit("")))
    documents = document_keys(keys, run_id, popular, _mapping_totals(spark, layout))
    return RunFootprint(user_list_keys(keys, run_id, users), similar_keys, documents)


def ranked_totals(
    frame: DataFrame, id_column: str, key_id: Column, label: str | None = None, pairs: int | None = None
) -> ListTotals:
    """Totals of ranked rows (rank, ``id_column``, score; rank 1 starts each list): ``key_id``
    is what varies in each list's key, ``label`` a column printed once per list (a method);
    ``pairs``, the row count, when the caller has it."""
    from pyspark.sql import functions as F

    pairs = frame.count() if pairs is None else pairs
    first = F.col("rank") == 1
    # A hash, not rand(): Spark refuses non-deterministic expressions inside an aggregate.
    sampled = F.pmod(F.xxhash64(id_column, "rank", "score"), 1_000_000) < 1_000_000 * SCORE_SAMPLE / max(pairs, 1)
    label_bytes = F.sum(F.when(first, F.octet_length(label))) if label else F.lit(0)
    row = frame.agg(
        F.count_if(first).alias("lists"),
        F.sum(F.octet_length(id_column)).alias("pair_id_bytes"),
        F.sum(F.when(first, F.octet_length(key_id))).alias("key_id_bytes"),
        F.avg(F.when(sampled, printed_score_width(F.col("score")))).alias("score_width"),
        label_bytes.alias("label_bytes"),
    ).first()
    width = row["score_width"]
    return ListTotals(
        lists=int(row["lists"] or 0),
        pairs=pairs,
        pair_id_bytes=int(row["pair_id_bytes"] or 0),
        key_id_bytes=int(row["key_id_bytes"] or 0),
        score_chars=None if width is None else round(width * pairs),
        string_bytes=int(row["label_bytes"] or 0),
    )


def _pairs(recommendations: DataFrame) -> int:
    """The listed items of a run folder's recommendations, without exploding stored lists."""
    from pyspark.sql import functions as F

    if "rank" in recommendations.columns:
        return recommendations.count()  # answered from the Parquet footers
    return int(recommendations.agg(F.sum(F.size("items"))).first()[0] or 0)


def printed_score_width(score: Column) -> Column:
    """How many characters a score takes in the store's JSON (six significant digits, shortest
    form, always a decimal point), from Java's %.6g without its trailing zeros."""
    from pyspark.sql import functions as F

    text = F.regexp_replace(F.format_string("%.6g", score), r"(\.[0-9]*?)0+(e|$)", "$1$2")
    text = F.regexp_replace(text, r"\.(e|$)", "$1")
    return F.length(text) + F.when(text.rlike("[.e]"), 0).otherwise(2)  # 12 is printed 12.0


def _with_context(users: ListTotals, context: DataFrame) -> ListTotals:
    """User-list totals with each user's seen items and categories, which every variant's list
    of that user carries."""
    from pyspark.sql import functions as F

    row = context.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(F.size("seen") + F.size("top_categories")).alias("strings"),
        F.sum(_array_bytes("seen") + _array_bytes("top_categories")).alias("bytes"),
    ).first()
    lists_per_user = users.lists / max(row["users"], 1)
    strings, string_bytes = int(row["strings"] or 0), int(row["bytes"] or 0)
    return replace(users, strings=round(strings * lists_per_user), string_bytes=round(string_bytes * lists_per_user))


def _mapping_totals(spark: SparkSession, layout: RunLayout) -> list[ListTotals]:
    """The item-categories and cold-items documents (the writer stores both, empty or not)."""
    from pyspark.sql import functions as F

    meta = storage.read_parquet_if_complete(spark, layout.item_meta)
    cold = storage.read_parquet_if_complete(spark, layout.cold)
    empty = ListTotals(0, 0, 0, 0)
    categories = empty
    if meta is not None:
        row = meta.agg(F.count(F.lit(1)), F.sum(F.octet_length("item_id")), F.sum(F.size("categories")),
                       F.sum(_array_bytes("categories"))).first()  # fmt: skip
        categories = ListTotals(int(row[0]), 0, 0, int(row[1] or 0), strings=int(row[2] or 0),
                                string_bytes=int(row[3] or 0))  # fmt: skip
    cold_items = empty
    if cold is not None:
        first = F.col("rank") == 1
        row = cold.agg(F.count_if(first), F.sum(F.when(first, F.octet_length("category"))), F.count(F.lit(1)),
                       F.sum(F.octet_length("item_id"))).first()  # fmt: skip
        cold_items = ListTotals(int(row[0]), 0, 0, int(row[1] or 0), strings=int(row[2]), string_bytes=int(row[3] or 0))
    return [categories, cold_items]


def _array_bytes(column: str) -> Column:
    """UTF-8 bytes of every string in an array column, per row."""
    from pyspark.sql import functions as F

    return F.aggregate(F.coalesce(column, F.array().cast("array<string>")), F.lit(0).cast("long"),
                       lambda total, value: total + F.octet_length(value))  # fmt: skip
