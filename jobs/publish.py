"""publish: load a completed run into Redis, verify it, and make it current in one atomic step.

    spark-submit --py-files dist/recs_jobs.zip jobs/publish.py --run-date 2026-11-29
    python -m jobs.publish --run-date 2026-11-20 --rollback     # make an older run current on purpose

The sequence itself (lock, register, verify, meta, promote, retention) is the store's
(store.writer.publish_run); this job supplies the load: the Spark executors write every
user's list from Arrow batches in pipelined batches, and the driver collects the short popular
lists. Refuses (exit status 2) a run without manifest.json, a run older than the current one
(unless --rollback), and any publish while another publisher holds the lock.
``python -m store.admin rollback`` goes back one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs import storage
from jobs.ranking import collect_ranked
from jobs.run_layout import RunLayout
from jobs.runner import JobError, run_job
from store.connection import RedisSettings, connect, writer_settings
from store.contract import KeyLayout
from store.writer import LoadedRun, PopularLists, PublishPolicy, RunLoader, publish_run

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config


def user_lists(recommendations: DataFrame) -> DataFrame:
    """One row per user and variant: variant, user_id and items (array of item_id, score), best first."""
    return collect_ranked(recommendations, ("variant", "user_id"), "rank", ("item_id", "score"), "items")


def popular_lists(popular: DataFrame) -> PopularLists:
    """The popular lists, collected to the driver (they are short): None is the overall list."""
    lists: PopularLists = {}
    for row in popular.orderBy("scope", "category", "rank").collect():
        key = None if row["scope"] == "all" else row["category"]
        lists.setdefault(key, []).append((row["item_id"], row["score"]))
    return lists


def load_user_lists(lists: DataFrame, settings: RedisSettings, prefix: str, run_id: str, batch_size: int) -> int:
    """Write every user's list from the executors, pipelined in batches; return keys written.

    Each partition reaches Python as Arrow record batches (mapInArrow, the columnar form of
    foreachPartition) and yields how many keys it wrote; a retried task rewrites the same keys
    and only its successful attempt is counted."""
    from pyspark.sql import functions as F

    def write_partition(batches):
        import pyarrow as pa

        from store.connection import connect
        from store.contract import KeyLayout
        from store.writer import user_list_writes

        client, keys = connect(settings), KeyLayout(prefix)
        try:
            pipe = client.pipeline(transaction=False)
            for batch in batches:
                for key, value in user_list_writes(_batch_lists(batch), keys, run_id):
                    pipe.set(key, value)
                    if len(pipe) >= batch_size:
                        pipe.execute()
                pipe.execute()
                yield pa.RecordBatch.from_pydict({"written": [batch.num_rows]})
        finally:
            client.close()

    return int(lists.mapInArrow(write_partition, "written long").agg(F.sum("written")).first()[0] or 0)


def _batch_lists(batch):
    """(variant, user_id, [(item_id, score), ...]) from an Arrow batch of user_lists rows."""
    variants, users = batch.column("variant").to_pylist(), batch.column("user_id").to_pylist()
    items = batch.column("items")
    offsets = items.offsets.to_pylist()
    item_ids, scores = items.values.field("item_id").to_pylist(), items.values.field("score").to_pylist()
    for row, user_id in enumerate(users):
        start, end = offsets[row], offsets[row + 1]
        yield variants[row], user_id, list(zip(item_ids[start:end], scores[start:end], strict=True))


def spark_loader(spark: SparkSession, layout: RunLayout, settings: RedisSettings, prefix: str, batch_size: int):
    """The load step of the publish sequence for one run folder: user lists (one per user and
    variant) from the executors, their count from the Parquet (verification compares the two),
    popular lists collected."""

    def load(run_id: str) -> LoadedRun:
        lists = user_lists(spark.read.parquet(layout.recommendations)).cache()
        users = lists.count()
        started = time.monotonic()
        written = load_user_lists(lists, settings, prefix, run_id, batch_size)
        write_seconds = time.monotonic() - started
        lists.unpersist()
        return LoadedRun(users, written, popular_lists(spark.read.parquet(layout.popular)), write_seconds)

    return load


def run(spark: SparkSession, cfg: Config, layout: RunLayout, rollback: bool = False) -> dict:
    """Publish the run of layout.run_date; return what was done."""
    manifest = storage.read_json(spark, layout.manifest)
    if manifest is None:
        raise JobError(
            f"run {layout.run_date} has no manifest.json at {layout.manifest}: "
            "it did not complete, so it is not published"
        )
    settings, keys = writer_settings(cfg.store), KeyLayout(cfg.store.key_prefix)
    policy = PublishPolicy.from_config(cfg.publish)
    load: RunLoader = spark_loader(spark, layout, settings, keys.prefix, policy.batch_size)
    client = connect(settings)
    try:
        return publish_run(client, keys, policy, manifest, load, rollback=rollback)
    finally:
        client.close()


def _add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rollback", action="store_true", help="make this run current even though it is older than the current one"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Publish one logical date's run; exit 2 when the store or the run refuses."""

    def act(spark, cfg, layout, args):
        return run(spark, cfg, layout, rollback=args.rollback)

    return run_job("publish", __doc__, argv, act, _add_publish_arguments)


if __name__ == "__main__":
    sys.exit(main())
