"""publish: load a completed run into Redis, verify it, and make it current in one atomic step.

    spark-submit --py-files dist/recs_jobs.zip jobs/publish.py --run-date 2026-11-29
    python -m jobs.publish --run-date 2026-11-20 --rollback     # make an older run current on purpose
    python -m jobs.publish --run-date 2026-11-29 --override-gate   # publish a run the gate held

The sequence itself (lock, register, verify, meta, promote, retention) is the store's
(store.writer.publish_run); this job supplies the load: the Spark executors write every
user's list from Arrow batches in pipelined batches, and the driver collects the short popular
lists. Refuses (exit status 2) a run without manifest.json, a run the quality gate held (unless
--override-gate), a run older than the current one (unless --rollback), and any publish while
another publisher holds the lock.
``python -m store.admin rollback`` goes back one run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from jobs import storage
from jobs.quality_gate import held_message, judge, published_metrics
from jobs.ranking import collect_ranked, stored_lists
from jobs.run_footprint import run_footprint
from jobs.run_layout import RunLayout
from jobs.runner import JobError, recording_failure, run_job
from store.connection import RedisSettings, connect, writer_settings
from store.contract import KeyLayout
from store.registry import current_run_recorder
from store.writer import LoadedRun, PopularLists, PublishPolicy, RunLoader, publish_run

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config

log = logging.getLogger("recs.publish")


def user_lists(recommendations: DataFrame, context: DataFrame | None = None) -> DataFrame:
    """One row per user and variant: variant, user_id, items (array of item_id, score), best
    first, and the user's seen and top_categories from ``context`` (empty without it)."""
    from pyspark.sql import functions as F

    lists = stored_lists(recommendations)
    empty = F.array().cast("array<string>")
    if context is None:
        return lists.select("*", empty.alias("seen"), empty.alias("top_categories"))
    joined = lists.join(context, "user_id", "left")
    seen, strongest = F.coalesce("seen", empty), F.coalesce("top_categories", empty)
    return joined.select("variant", "user_id", "items", seen.alias("seen"), strongest.alias("top_categories"))


def similar_lists(similar: DataFrame) -> DataFrame:
    """One row per item: item_id, method and items (array of similar_item_id, score), best first."""
    return collect_ranked(similar, ("item_id", "method"), "rank", ("similar_item_id", "score"), "items")


def popular_lists(popular: DataFrame) -> PopularLists:
    """The popular lists, collected to the driver (they are short): None is the overall list."""
    lists: PopularLists = {}
    for row in popular.orderBy("scope", "category", "rank").collect():
        key = None if row["scope"] == "all" else row["category"]
        lists.setdefault(key, []).append((row["item_id"], row["score"]))
    return lists


def load_lists(lists: DataFrame, kind: str, settings: RedisSettings, prefix: str, run_id: str, batch_size: int) -> int:
    """Write every row of ``lists`` (``kind`` "user": user_lists rows; "similar": similar_lists
    rows) as one key each from the executors, pipelined in batches; return keys written.

    Each partition reaches Python as Arrow record batches (mapInArrow, the columnar form of
    foreachPartition) and yields how many keys it wrote; a retried task rewrites the same keys
    and only its successful attempt is counted."""
    from pyspark.sql import functions as F

    def write_partition(batches):
        import pyarrow as pa

        from store.bulk import set_columns
        from store.connection import connect
        from store.contract import KeyLayout

        client, keys = connect(settings), KeyLayout(prefix)
        try:
            for batch in batches:
                written = set_columns(client, *_encoded(batch, kind, keys, run_id), batch_size)
                yield pa.RecordBatch.from_pydict({"written": [written]})
        finally:
            client.close()

    return int(lists.mapInArrow(write_partition, "written long").agg(F.sum("written")).first()[0] or 0)


def _encoded(batch, kind: str, keys, run_id: str):
    """Keys and values (Arrow columns) of an Arrow batch of user_lists or similar_lists rows."""
    from store.contract import similar_list_columns, user_list_columns

    column = batch.column
    if kind == "user":
        return user_list_columns(keys, run_id, column("variant"), column("user_id"), column("items"),
                                 column("seen"), column("top_categories"), "item_id")  # fmt: skip
    return similar_list_columns(keys, run_id, column("item_id"), column("method"), column("items"), "similar_item_id")


def spark_loader(spark: SparkSession, layout: RunLayout, settings: RedisSettings, prefix: str, batch_size: int):
    """The load step of the publish sequence for one run folder: user lists (one per user and
    variant) and item-to-item lists from the executors, their counts from the Parquet
    (verification compares them with the keys), and the short documents collected."""

    def load(run_id: str) -> LoadedRun:
        context = storage.read_parquet_if_complete(spark, layout.user_context)
        recommendations = spark.read.parquet(layout.recommendations)
        lists = user_lists(recommendations, context)
        similar = storage.read_parquet_if_complete(spark, layout.similar)
        similar = similar_lists(similar).cache() if similar is not None else None
        users, items = list_count(recommendations), similar.count() if similar is not None else 0
        started = time.monotonic()
        written = load_lists(lists, "user", settings, prefix, run_id, batch_size)
        if similar is not None:
            written += load_lists(similar, "similar", settings, prefix, run_id, batch_size)
            similar.unpersist()
        write_seconds = time.monotonic() - started
        popular = popular_lists(spark.read.parquet(layout.popular))
        return LoadedRun(users, written, popular, write_seconds, items, *_catalogue(spark, layout))

    return load


def list_count(recommendations: DataFrame) -> int:
    """How many user lists a run folder's recommendations hold (what verification expects in
    the store), counted on the Parquet without grouping it."""
    if "rank" in recommendations.columns:
        return recommendations.where("rank = 1").count()
    return recommendations.count()


def _catalogue(spark: SparkSession, layout: RunLayout) -> tuple[dict, dict]:
    """Each item's categories (from the item metadata) and each category's cold items, collected
    to the driver: the API holds both in memory."""
    meta, cold = (
        storage.read_parquet_if_complete(spark, layout.item_meta),
        storage.read_parquet_if_complete(spark, layout.cold),
    )
    categories = (
        {row["item_id"]: list(row["categories"]) for row in meta.select("item_id", "categories").collect()}
        if meta
        else {}
    )
    by_category: dict[str, list[str]] = {}
    if cold is not None:
        for row in cold.orderBy("category", "rank").collect():
            by_category.setdefault(row["category"], []).append(row["item_id"])
    return categories, by_category


def run(
    spark: SparkSession,
    cfg: Config,
    layout: RunLayout,
    rollback: bool = False,
    override_gate: bool = False,
    switched_by: str | None = None,
) -> dict:
    """Publish the run of layout.run_date; return what was done. A run the quality gate held is
    refused unless ``override_gate``, which is logged and recorded in the run's meta. The run
    made current is recorded next to the run folders as switched by ``switched_by`` (default:
    this command)."""
    manifest = storage.read_json(spark, layout.manifest)
    if manifest is None:
        raise JobError(
            f"run {layout.run_date} has no manifest.json at {layout.manifest}: "
            "it did not complete, so it is not published"
        )
    manifest = _checked_against_gate(manifest, layout.run_date, override_gate)
    settings, keys = writer_settings(cfg.store), KeyLayout(cfg.store.key_prefix)
    policy = PublishPolicy.from_config(cfg.publish)
    load: RunLoader = spark_loader(spark, layout, settings, keys.prefix, policy.batch_size)
    client = connect(settings)
    try:
        if cfg.gate.enabled and not (rollback or override_gate):
            _check_against_current(client, keys, manifest, cfg, layout.run_date)
        by = switched_by or ("publish --rollback" if rollback else "publish")
        record = current_run_recorder(cfg, by)
        # Estimated only when a load is due, under the lock, before any key is written.
        footprint = partial(run_footprint, spark, layout, keys, manifest["run_id"])
        result = publish_run(client, keys, policy, manifest, load, rollback=rollback, on_switch=record,
                             footprint=footprint)  # fmt: skip
    finally:
        client.close()
    if manifest.get("gate", {}).get("overridden") and result["status"] == "published":
        log.warning("published run %s although the quality gate held it (--override-gate): %s",
                    layout.run_date, manifest["gate"]["reason"])  # fmt: skip
    return result


def _checked_against_gate(manifest: dict, run_date: str, override_gate: bool) -> dict:
    """Refuse a held run unless overridden; an override is kept with the run."""
    gate = manifest.get("gate")
    if gate is None or gate["passed"]:
        return manifest
    if not override_gate:
        raise JobError(held_message(run_date, gate))
    return {**manifest, "gate": {**gate, "overridden": True}}


def _check_against_current(client, keys: KeyLayout, manifest: dict, cfg: Config, run_date: str) -> None:
    """Judge the run again against the run it would replace: finalize may not have reached the
    store, or another run may have been published since."""
    gate = judge(manifest.get("metrics") or {}, published_metrics(client, keys), cfg.gate)
    if not gate["passed"]:
        raise JobError(held_message(run_date, gate))


def _add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rollback", action="store_true", help="make this run current even though it is older than the current one"
    )
    parser.add_argument(
        "--override-gate",
        action="store_true",
        help="publish a run the quality gate held (logged, and kept in its meta)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Publish one logical date's run; exit 2 when the store or the run refuses."""

    def act(spark, cfg, layout, args):
        with recording_failure(spark, layout, "publish"):
            return run(spark, cfg, layout, rollback=args.rollback, override_gate=args.override_gate)

    return run_job("publish", __doc__, argv, act, _add_publish_arguments)


if __name__ == "__main__":
    sys.exit(main())
