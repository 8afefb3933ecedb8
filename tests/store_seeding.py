"""Putting runs into a real Redis for API tests, through the store's own publish sequence
(store.writer.publish_run) with the lists in hand instead of a Spark load; and writing run
folders as finalize would leave them, for publish tests."""

from __future__ import annotations

import datetime as dt

from store.contract import DEFAULT_VARIANT, KeyLayout
from store.writer import LoadedRun, PublishPolicy, publish_run, similar_list_writes, user_list_writes

SEEDING_POLICY = PublishPolicy(keep_runs=10, batch_size=500, lock_ttl_seconds=30)


def seed_run(
    client,
    run_id: str,
    users: dict[str, list[tuple[str, float]]],
    popular: list[tuple[str, float]],
    categories: dict[str, list[tuple[str, float]]] | None = None,
    prefix: str = "recs",
    published_at: str = "2026-11-29T02:00:00+00:00",
    experiment: dict | None = None,
    variant_lists: dict[str, dict[str, list[tuple[str, float]]]] | None = None,
    context: dict[str, tuple[list[str], list[str]]] | None = None,
    catalogue: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {}),
    similar: dict[str, tuple[str, list[tuple[str, float]]]] | None = None,
    manifest: dict | None = None,
) -> dict:
    """Publish one run and make it current, as the publish job would (older runs too).
    ``users`` are the default variant's lists; with an ``experiment`` (name, salt, control,
    shares), ``variant_lists`` holds each variant's lists instead. ``context`` gives users'
    (seen popular items, strongest categories), ``catalogue`` the (item categories, cold items
    per category) and ``similar`` the item-to-item lists as (method, items); ``manifest`` adds
    to the minimal manifest the run is published from (metrics, timings, counts)."""
    by_variant = variant_lists or {DEFAULT_VARIANT: users}
    context = context or {}
    rows = [(variant, user, items, *context.get(user, ((), ()))) for variant, lists in by_variant.items()
            for user, items in lists.items()]  # fmt: skip
    similar_rows = [(item, method, items) for item, (method, items) in (similar or {}).items()]

    def load(loading_run_id: str) -> LoadedRun:
        pipe = client.pipeline(transaction=False)
        for key, value in user_list_writes(rows, KeyLayout(prefix), loading_run_id):
            pipe.set(key, value)
        for key, value in similar_list_writes(similar_rows, KeyLayout(prefix), loading_run_id):
            pipe.set(key, value)
        pipe.execute()
        lists = {None: popular, **(categories or {})}
        return LoadedRun(len(rows), len(rows) + len(similar_rows), lists, None, len(similar_rows), *catalogue)

    manifest = {"run_id": run_id, "run_date": run_id[:10], "code_version": "test", "metrics": {},
                "variants": list(by_variant), "experiment": experiment, **(manifest or {})}  # fmt: skip
    return publish_run(
        client, KeyLayout(prefix), SEEDING_POLICY, manifest, load, rollback=True,
        now=lambda: dt.datetime.fromisoformat(published_at),
    )  # fmt: skip


def tagged_lists(tag: str, users: int, per_user: int) -> dict[str, list[tuple[str, float]]]:
    """Per-user lists whose item ids carry ``tag``, so a response mixing runs shows at once."""
    return {
        f"user_{u:04d}": [(f"{tag}-item-{(u + k) % 97:03d}", round(1.0 - k / 100, 4)) for k in range(per_user)]
        for u in range(users)
    }


def write_run_folder(spark, runs_root: str, run_date: str, run_id: str, tag: str, users: int = 40, per_user: int = 5):
    """A completed run folder (recommendations, popular, manifest) as finalize would leave it."""
    from jobs import storage
    from jobs.run_layout import RunLayout

    layout = RunLayout(runs_root, run_date)
    rows = [(DEFAULT_VARIANT, user, rank, item, score) for user, items in tagged_lists(tag, users, per_user).items()
            for rank, (item, score) in enumerate(items, 1)]  # fmt: skip
    schema = "variant string, user_id string, rank int, item_id string, score double"
    spark.createDataFrame(rows, schema).write.mode("overwrite").partitionBy("variant").parquet(layout.recommendations)
    popular = [("all", None, rank, f"{tag}-pop-{rank:02d}", float(100 - rank)) for rank in range(1, 11)]
    popular += [("category", "Drama", rank, f"{tag}-drama-{rank:02d}", float(50 - rank)) for rank in range(1, 4)]
    spark.createDataFrame(popular, "scope string, category string, rank int, item_id string, score double").write.mode(
        "overwrite"
    ).parquet(layout.popular)
    manifest = {"run_id": run_id, "run_date": run_date, "code_version": "test", "metrics": {"k": 10}}
    storage.write_json(spark, layout.manifest, manifest)
    return layout
