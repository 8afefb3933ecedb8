"""Runs for tests: seed_run (tools/seeding.py) puts one straight into Redis; tagged_lists makes
lists whose items name their run; write_run_folder leaves a run folder as finalize would."""

from __future__ import annotations

from store.contract import DEFAULT_VARIANT
from tools.seeding import SEEDING_POLICY, seed_run

__all__ = ["SEEDING_POLICY", "seed_run", "tagged_lists", "write_run_folder"]


def tagged_lists(tag: str, users: int, per_user: int) -> dict[str, list[tuple[str, float]]]:
    """Per-user lists whose item ids carry ``tag``, so a response mixing runs shows at once."""
    return {
        f"user_{u:04d}": [(f"{tag}-item-{(u + k) % 97:03d}", round(1.0 - k / 100, 4)) for k in range(per_user)]
        for u in range(users)
    }


def write_run_folder(
    spark, runs_root: str, run_date: str, run_id: str, tag: str, users: int = 40, per_user: int = 5, per_rank=False
):
    """A completed run folder (recommendations, popular, manifest) as finalize would leave it;
    ``per_rank``: recommendations one row per rank, as run folders were written before lists
    were stored whole."""
    from jobs import storage
    from jobs.run_layout import RunLayout

    layout = RunLayout(runs_root, run_date)
    lists = tagged_lists(tag, users, per_user)
    if per_rank:
        rows = [(DEFAULT_VARIANT, user, rank, item, score) for user, items in lists.items()
                for rank, (item, score) in enumerate(items, 1)]  # fmt: skip
        schema = "variant string, user_id string, rank int, item_id string, score double"
    else:
        rows = [(DEFAULT_VARIANT, user, [(item, score) for item, score in items]) for user, items in lists.items()]
        schema = "variant string, user_id string, items array<struct<item_id:string,score:double>>"
    spark.createDataFrame(rows, schema).write.mode("overwrite").partitionBy("variant").parquet(layout.recommendations)
    popular = [("all", None, rank, f"{tag}-pop-{rank:02d}", float(100 - rank)) for rank in range(1, 11)]
    popular += [("category", "Drama", rank, f"{tag}-drama-{rank:02d}", float(50 - rank)) for rank in range(1, 4)]
    spark.createDataFrame(popular, "scope string, category string, rank int, item_id string, score double").write.mode(
        "overwrite"
    ).parquet(layout.popular)
    manifest = {"run_id": run_id, "run_date": run_date, "code_version": "test", "metrics": {"k": 10}}
    storage.write_json(spark, layout.manifest, manifest)
    return layout
