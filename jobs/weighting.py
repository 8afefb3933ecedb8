"""How aggregated interaction weights become ALS ratings (``train.weight_transform``).

Implicit ALS turns a rating r into a confidence 1 + alpha * r, so the transform decides how
much a repeat, a high rating or a popular item counts:

    none    r = w
    log1p   r = log(1 + w)
    bm25    r = w * (k1 + 1) / (k1 * L_i + w) * idf_u
    tfidf   r = sqrt(w) * idf_u

with L_i = (1 - b) + b * W_i / mean(W), W_i the item's total weight, and
idf_u = max(ln(I / (1 + I_u)), 0.001), I the number of items and I_u the user's. These
are the BM25 and TF-IDF weightings used for implicit ALS on listening data, with items as the
documents and users as the terms: a popular item's weights saturate sooner, and a user who
touched everything says less about each item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conf.schema import WEIGHT_TRANSFORMS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from conf.schema import TrainSection

MIN_IDF = 1e-3  # a user with every item would get idf <= 0, which ALS reads as no preference


def training_ratings(interactions: DataFrame, params: TrainSection) -> DataFrame:
    """The ALS input: user_idx, item_idx and a float ``rating`` from the aggregated ``weight``."""
    from pyspark.sql import functions as F

    transform = params.weight_transform
    if transform == "none":
        return _ratings(interactions, F.col("weight"))
    if transform == "log1p":
        return _ratings(interactions, F.log1p("weight"))
    if transform not in WEIGHT_TRANSFORMS:
        raise ValueError(f"weight transform must be one of {', '.join(WEIGHT_TRANSFORMS)}, got {transform!r}")
    with_idf = _with_user_idf(interactions)
    if transform == "tfidf":
        return _ratings(with_idf, F.sqrt("weight") * F.col("_idf"))
    return _ratings(_with_item_length(with_idf, params.bm25_b), _bm25(params.bm25_k1))


def _ratings(frame: DataFrame, rating: Column) -> DataFrame:
    return frame.select("user_idx", "item_idx", rating.cast("float").alias("rating"))


def _with_user_idf(interactions: DataFrame) -> DataFrame:
    """Add ``_idf``: ln(items / (1 + the user's items)), at least MIN_IDF."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    items = interactions.select(F.countDistinct("item_idx").alias("_items"))
    user_items = F.count(F.lit(1)).over(Window.partitionBy("user_idx"))
    idf = F.greatest(F.log(F.col("_items")) - F.log1p(user_items), F.lit(MIN_IDF))
    return interactions.crossJoin(F.broadcast(items)).select("user_idx", "item_idx", "weight", idf.alias("_idf"))


def _with_item_length(frame: DataFrame, b: float) -> DataFrame:
    """Add ``_length``: (1 - b) + b * the item's total weight / the mean item's."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    item_total = F.sum("weight").over(Window.partitionBy("item_idx"))
    totals = frame.select("*", item_total.alias("_item_total"))
    mean = totals.groupBy("item_idx").agg(F.first("_item_total").alias("t")).select(F.avg("t").alias("_mean_total"))
    length = F.lit(1.0 - b) + F.lit(b) * F.col("_item_total") / F.col("_mean_total")
    return totals.crossJoin(F.broadcast(mean)).select("user_idx", "item_idx", "weight", "_idf", length.alias("_length"))


def _bm25(k1: float) -> Column:
    from pyspark.sql import functions as F

    weight = F.col("weight")
    return weight * F.lit(k1 + 1.0) / (F.lit(k1) * F.col("_length") + weight) * F.col("_idf")
