"""publish: load a completed run into Redis, verify it, and make it current in one atomic step.

    spark-submit --py-files dist/recs_jobs.zip jobs/publish.py --config conf/pipeline.yaml --run-date 2026-11-29
    python -m jobs.publish --run-date 2026-11-20 --rollback     # make an older run current on purpose

Refuses (exit status 2) a run without manifest.json, a run older than the current one (unless
--rollback), and any publish while another publisher holds the lock. Per-user lists are written
from the Spark executors in pipelined batches; the run becomes current only after the number of
user keys in Redis equals the number of users in the Parquet. Then runs beyond
``publish.keep_runs`` are removed. ``python -m serving.admin rollback`` goes back one run.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobs import storage
from jobs.ranking import collect_ranked
from jobs.run_layout import RunLayout
from jobs.stage import JobError, run_job
from serving import publishing
from serving.contract import CONTRACT_VERSION, KeyLayout
from serving.redis_conn import RedisSettings, connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("recs.publish")


def user_lists(recommendations: DataFrame) -> DataFrame:
    """One row per user: user_id and items (array of item_id, score), best first."""
    return collect_ranked(recommendations, "user_id", "rank", ("item_id", "score"), "items")


def popular_lists(popular: DataFrame) -> dict[str | None, list[tuple[str, float]]]:
    """The popular lists, collected to the driver (they are short): None is the overall list."""
    lists: dict[str | None, list] = {}
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

        from serving.contract import KeyLayout
        from serving.publishing import user_list_writes
        from serving.redis_conn import connect

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
    """(user_id, [(item_id, score), ...]) pairs from an Arrow batch of user_lists rows."""
    users = batch.column("user_id").to_pylist()
    items = batch.column("items")
    offsets = items.offsets.to_pylist()
    item_ids, scores = items.values.field("item_id").to_pylist(), items.values.field("score").to_pylist()
    for row, user_id in enumerate(users):
        start, end = offsets[row], offsets[row + 1]
        yield user_id, list(zip(item_ids[start:end], scores[start:end], strict=True))


def run(spark: SparkSession, cfg: dict, layout: RunLayout, rollback: bool = False) -> dict:
    """Publish the run of layout.run_date; return what was done."""
    manifest = storage.read_json(spark, layout.manifest)
    if manifest is None:
        raise JobError(
            f"run {layout.run_date} has no manifest.json at {layout.manifest}: "
            "it did not complete, so it is not published"
        )
    publish_cfg = cfg["publish"]
    settings, keys = publishing.publisher_settings(publish_cfg), KeyLayout(publish_cfg["key_prefix"])
    client = connect(settings)
    try:
        ttl = float(publish_cfg["lock_ttl_seconds"])
        with publishing.publish_lock(client, keys, ttl) as lock, publishing.lock_kept_alive(lock, ttl / 3):
            return _publish_locked(spark, client, keys, lock, manifest, layout, cfg, rollback)
    finally:
        client.close()


def _publish_locked(spark, client, keys: KeyLayout, lock, manifest: dict, layout: RunLayout, cfg: dict, rollback: bool):
    publish_cfg, run_id = cfg["publish"], manifest["run_id"]
    current = publishing.current_run(client, keys)
    if current == run_id:
        log.info("run %s is already current; nothing to do", run_id)
        return {"status": "already_current", "run_id": run_id}
    if current and run_id < current and not rollback:
        raise publishing.PublishRefused(
            f"run {run_id} is older than the current run {current}; pass --rollback to make it current on purpose"
        )
    retained_users = _retained_users(client, keys, run_id) if rollback else None
    if retained_users is not None:
        load = {"users": retained_users, "reused": True}
    else:
        load = _load_run(spark, client, keys, manifest, layout, publish_cfg)
    publishing.renew_publish_lock(lock)
    previous = publishing.promote(client, keys, run_id, lock, allow_older=rollback)
    keep, batch_size = int(publish_cfg["keep_runs"]), int(publish_cfg["batch_size"])
    pruned = publishing.prune(client, keys, keep, batch_size, also_keep=(previous,))
    report = {"status": "published", "run_id": run_id, "previous_run_id": previous, **load, "pruned_runs": pruned}
    log.info("published run %s (was %s): %s; pruned %s", run_id, previous, load, pruned or "nothing")
    return report


def _retained_users(client, keys: KeyLayout, run_id: str) -> int | None:
    """The user count of a run still complete in the store (a rollback then needs no reload), else None."""
    meta = publishing.run_meta(client, keys, run_id)
    if not meta or meta.get("status") != "complete":
        return None
    users = meta["counts"]["users"]
    return users if publishing.run_is_servable(client, keys, run_id, users) is None else None


def _load_run(spark, client, keys: KeyLayout, manifest: dict, layout: RunLayout, publish_cfg: dict) -> dict:
    """Load every key of the run and verify it; a run that fails verification is removed again."""
    run_id = manifest["run_id"]
    publishing.delete_run(client, keys, run_id)  # leftovers of an earlier, unfinished attempt
    publishing.register_run(client, keys, run_id)
    lists = user_lists(spark.read.parquet(layout.recommendations)).cache()
    users = lists.count()
    settings, batch_size = publishing.publisher_settings(publish_cfg), int(publish_cfg["batch_size"])
    started = time.monotonic()
    written = load_user_lists(lists, settings, keys.prefix, run_id, batch_size)
    load_seconds = time.monotonic() - started
    lists.unpersist()
    popular = popular_lists(spark.read.parquet(layout.popular))
    publishing.write_popular(client, keys, run_id, popular)
    problem = publishing.run_is_servable(client, keys, run_id, users)
    if problem:
        publishing.delete_run(client, keys, run_id)
        raise publishing.PublishRefused(f"{problem}; the run was removed and the current run is unchanged")
    # Only a verified run is marked complete: retention and rollback trust this status.
    published_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    publishing.write_meta(client, keys, run_id, run_meta(manifest, users, popular, published_at))
    return {
        "users": users,
        "keys_written": written,
        "load_seconds": round(load_seconds, 3),
        "keys_per_second": round(written / load_seconds, 1) if load_seconds else None,
    }


def run_meta(manifest: dict, users: int, popular: dict, published_at: str) -> dict:
    """The run's meta document in the store."""
    return {
        "contract_version": CONTRACT_VERSION,
        "run_id": manifest["run_id"],
        "run_date": manifest["run_date"],
        "published_at": published_at,
        "status": "complete",
        "code_version": manifest.get("code_version"),
        "counts": {"users": users, "popular_items": len(popular.get(None, [])), "categories": len(popular) - 1},
        "metrics": {name: manifest["metrics"].get(name) for name in ("k", "als", "popularity")},
        "categories": sorted(category for category in popular if category is not None),
    }


def _add_publish_arguments(parser) -> None:
    parser.add_argument(
        "--rollback", action="store_true", help="make this run current even though it is older than the current one"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Publish one logical date's run; exit 2 when the store or the run refuses."""

    def act(spark, cfg, layout, args):
        return run(spark, cfg, layout, rollback=args.rollback)

    return run_job("publish", __doc__, argv, act, _add_publish_arguments, (publishing.PublishRefused,))


if __name__ == "__main__":
    sys.exit(main())
