"""train: fit ALS on all the prepared interactions, once per ALS variant of the run (one
without an experiment); save each model and its user and item factors under its variant's name.

    spark-submit --py-files dist/recs_jobs.zip jobs/train.py --run-date 2026-11-29

The setting is the one the tune stage chose (``tuning/chosen.json``) laid over the ``train``
section, and an experiment variant's own changes over that. A Spark checkpoint directory is
always set (``spark.checkpoint_dir``): ALS lineage overflows the stack at about 15 iterations
without one.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jobs.run_layout import RunLayout
from jobs.runner import JobError, job_main
from jobs.weighting import training_ratings

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALS, ALSModel
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config, TrainSection


def build_als(params: TrainSection) -> ALS:
    """An ALS estimator configured from the ``train`` config section."""
    from pyspark.ml.recommendation import ALS

    return ALS(
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="rating",
        implicitPrefs=params.implicit_prefs,
        rank=params.rank,
        regParam=params.reg_param,
        alpha=params.alpha,
        maxIter=params.max_iter,
        seed=params.seed,
        checkpointInterval=params.checkpoint_interval,
        numUserBlocks=params.num_user_blocks,
        numItemBlocks=params.num_item_blocks,
        coldStartStrategy="drop",
    )


def fit_als(interactions: DataFrame, params: TrainSection) -> ALSModel:
    """Fit ALS on prepared interactions (user_idx, item_idx, weight)."""
    spark = interactions.sparkSession
    if not spark.sparkContext.getCheckpointDir():
        raise JobError("ALS needs a checkpoint directory: set spark.checkpoint_dir")
    return build_als(params).fit(training_ratings(interactions, params))


def factors_with_ids(factors: DataFrame, id_map: DataFrame, index_col: str, id_col: str) -> DataFrame:
    """ALS factors (id, features) joined back to the original ids: index_col, id_col, features."""
    return factors.withColumnRenamed("id", index_col).join(id_map, index_col).select(index_col, id_col, "features")


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Fit each ALS variant on this run's prepared interactions and save it with its factors."""
    from jobs import storage
    from jobs.tune import read_chosen_train

    chosen = read_chosen_train(spark, cfg, layout)
    interactions = spark.read.parquet(layout.interactions).cache()
    users, items = spark.read.parquet(layout.users), spark.read.parquet(layout.items)
    for output in ("models", "factors"):  # variants of an earlier attempt must not linger
        storage.delete(spark, layout.path(output))
    trained = {}
    for variant in cfg.variants(chosen):
        if variant.model == "als":
            trained[variant.name] = _train_variant(interactions, users, items, variant.name, variant.train, layout)
    interactions.unpersist()
    return {"variants": trained}


def _train_variant(interactions, users, items, name: str, params: TrainSection, layout: RunLayout) -> dict:
    model = fit_als(interactions, params)
    model.write().overwrite().save(layout.variant_path("models", name))
    factors = layout.variant_path("factors", name)
    factors_with_ids(model.userFactors, users, "user_idx", "user_id").write.mode("overwrite").parquet(
        f"{factors}/users"
    )
    factors_with_ids(model.itemFactors, items, "item_idx", "item_id").write.mode("overwrite").parquet(
        f"{factors}/items"
    )
    spark = interactions.sparkSession
    return {
        "params": params.model_dump(),
        "output": {
            "user_factors": spark.read.parquet(f"{factors}/users").count(),
            "item_factors": spark.read.parquet(f"{factors}/items").count(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the train stage for one logical date."""
    return job_main("train", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
