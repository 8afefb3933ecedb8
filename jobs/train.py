"""train: fit ALS on the prepared interactions; save the model and its user and item factors.

    spark-submit --py-files dist/recs_jobs.zip jobs/train.py --config conf/pipeline.yaml --run-date 2026-11-29

Settings come from the ``train`` section: implicit_prefs, rank, reg_param, alpha, max_iter,
seed, checkpoint_interval, weight_transform. A Spark checkpoint directory is always set
(``spark.checkpoint_dir``): ALS lineage overflows the stack at about 15 iterations without one.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs.run_layout import RunLayout
from jobs.stage import JobError, job_main

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALS, ALSModel
    from pyspark.sql import DataFrame, SparkSession

WEIGHT_TRANSFORMS = ("none", "log1p")


def training_ratings(interactions: DataFrame, weight_transform: str) -> DataFrame:
    """The ALS input: user_idx, item_idx and a ``rating`` derived from the aggregated weight."""
    from pyspark.sql import functions as F

    if weight_transform == "none":
        rating = F.col("weight")
    elif weight_transform == "log1p":
        # Heavy repeat counts would otherwise swamp the confidence term (1 + alpha * r).
        rating = F.log1p("weight")
    else:
        raise JobError(f"train.weight_transform must be one of {WEIGHT_TRANSFORMS}, got {weight_transform!r}")
    return interactions.select("user_idx", "item_idx", rating.cast("float").alias("rating"))


def build_als(params: dict) -> ALS:
    """An ALS estimator configured from the ``train`` config section."""
    from pyspark.ml.recommendation import ALS

    return ALS(
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="rating",
        implicitPrefs=bool(params["implicit_prefs"]),
        rank=int(params["rank"]),
        regParam=float(params["reg_param"]),
        alpha=float(params["alpha"]),
        maxIter=int(params["max_iter"]),
        seed=int(params["seed"]),
        checkpointInterval=int(params["checkpoint_interval"]),
        numUserBlocks=int(params.get("num_user_blocks") or 10),
        numItemBlocks=int(params.get("num_item_blocks") or 10),
        coldStartStrategy="drop",
    )


def fit_als(interactions: DataFrame, params: dict) -> ALSModel:
    """Fit ALS on prepared interactions (user_idx, item_idx, weight)."""
    spark = interactions.sparkSession
    if not spark.sparkContext.getCheckpointDir():
        raise JobError("ALS needs a checkpoint directory: set spark.checkpoint_dir")
    ratings = training_ratings(interactions, params.get("weight_transform") or "none")
    return build_als(params).fit(ratings)


def factors_with_ids(factors: DataFrame, id_map: DataFrame, index_col: str, id_col: str) -> DataFrame:
    """ALS factors (id, features) joined back to the original ids: index_col, id_col, features."""
    return factors.withColumnRenamed("id", index_col).join(id_map, index_col).select(index_col, id_col, "features")


def run(spark: SparkSession, cfg: dict, layout: RunLayout) -> dict:
    """Fit the model on this run's prepared interactions and save it with its factors."""
    params = cfg["train"]
    interactions = spark.read.parquet(layout.interactions)
    model = fit_als(interactions, params)
    model.write().overwrite().save(layout.model)
    users, items = spark.read.parquet(layout.users), spark.read.parquet(layout.items)
    factors_with_ids(model.userFactors, users, "user_idx", "user_id").write.mode("overwrite").parquet(
        layout.user_factors
    )
    factors_with_ids(model.itemFactors, items, "item_idx", "item_id").write.mode("overwrite").parquet(
        layout.item_factors
    )
    keys = ("implicit_prefs", "rank", "reg_param", "alpha", "max_iter", "seed", "weight_transform")
    return {
        "params": {key: params.get(key) for key in keys},
        "output": {
            "user_factors": spark.read.parquet(layout.user_factors).count(),
            "item_factors": spark.read.parquet(layout.item_factors).count(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the train stage for one logical date."""
    return job_main("train", run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
