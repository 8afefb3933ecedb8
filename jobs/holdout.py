"""The run's holdout split and the models trained on it, shared by tuning and evaluation.

tune writes the split once (``evaluation/split``: the prepared interactions plus ``holdout``)
and keeps the winning trial's model under ``evaluation/models/<key>``, the key naming the ALS
setting and the users it was fitted on (every user, or the seeded sample of
``tune.train_users``). evaluate scores the same split, on the same users, and loads a model
whose setting it needs from there, so no model is trained twice for the same purpose; it trains
(and keeps) only the settings tuning did not, such as an experiment variant's own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs import storage

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame

    from conf.schema import EvaluateSection, TrainSection


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


def split_interactions(interactions: DataFrame, settings: EvaluateSection) -> DataFrame:
    """The run's split, as the ``evaluate`` section describes it."""
    return mark_holdout(interactions, settings.holdout_fraction, settings.min_user_interactions, settings.seed)


def split_settings(settings: EvaluateSection) -> dict:
    """The settings a split depends on; a split made with others is out of date."""
    return {name: getattr(settings, name) for name in ("holdout_fraction", "min_user_interactions", "seed")}


def relevant_items(holdout: DataFrame) -> DataFrame:
    """Per user, the held-out item indices: user_idx, relevant."""
    from pyspark.sql import functions as F

    return holdout.groupBy("user_idx").agg(F.collect_set("item_idx").alias("relevant"))


def split_method(split: DataFrame) -> str:
    """How the split was made: by time when the interactions carry timestamps."""
    return "latest_by_timestamp" if split.where("ts IS NOT NULL").limit(1).count() else "seeded_random"


def sample_users(users: DataFrame, max_users: int, seed: int) -> DataFrame:
    """At most ``max_users`` of the users in ``users`` (one row each, with a user_idx), chosen
    by a seeded hash (the same every run); ``users`` itself when there are no more than that."""
    from pyspark.sql import functions as F

    if users.count() <= max_users:  # the caller caches users
        return users
    return users.orderBy(F.xxhash64(F.lit(int(seed)), "user_idx"), "user_idx").limit(int(max_users))


@dataclass
class SampledSplit:
    """The split kept to a seeded sample of its training users. ``sample_size`` is the
    sample's bound, None when the split is whole (no bound, or the sample held every user)."""

    split: DataFrame
    sample_size: int | None
    cached: list = field(default_factory=list)

    def unpersist(self) -> None:
        """Release the frames cached to draw the sample."""
        unpersist_all(self.cached)


def unpersist_all(frames: list) -> None:
    """Release cached frames."""
    for frame in frames:
        frame.unpersist()


def sampled_split(split: DataFrame, max_users: int | None, seed: int) -> SampledSplit:
    """The split's rows of at most ``max_users`` of its training users (all when None), drawn
    by ``sample_users``: tune fits its trials on them and evaluate scores them."""
    if max_users is None:
        return SampledSplit(split, None)
    users = split.where("NOT holdout").select("user_idx").distinct().cache()
    try:
        sampled = sample_users(users, max_users, seed)
    except BaseException:
        users.unpersist()
        raise
    if sampled is users:  # sample_users keeps every user when there are no more than the bound
        users.unpersist()
        return SampledSplit(split, None)
    sampled = sampled.cache()
    return SampledSplit(split.join(sampled, "user_idx", "left_semi"), int(max_users), [users, sampled])


def setting_key(params: TrainSection, sample_size: int | None = None) -> str:
    """A short name for an ALS setting fitted on the whole split (``sample_size`` None) or on a
    user sample of that bound: models trained with equal settings on equal users share it."""
    described = params.model_dump(mode="json")
    if sample_size is not None:
        described["user_sample"] = int(sample_size)
    text = json.dumps(described, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_holdout_model(models_root: str, params: TrainSection, sample_size: int | None = None) -> ALSModel | None:
    """The model kept for this setting and these users, or None when there is none."""
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import SparkSession

    path = f"{models_root}/{setting_key(params, sample_size)}"
    spark = SparkSession.getActiveSession()
    # ALSModel.save writes metadata, then user factors, then item factors: the last one's
    # marker means the whole model is there, not half of a save that crashed.
    if spark is None or not storage.exists(spark, f"{path}/itemFactors/_SUCCESS"):
        return None
    return ALSModel.load(path)


def keep_holdout_model(model: ALSModel, models_root: str, params: TrainSection, sample_size: int | None = None) -> str:
    """Save a model trained on the split (or its user sample) under its setting's key; return where."""
    path = f"{models_root}/{setting_key(params, sample_size)}"
    model.write().overwrite().save(path)
    return path
