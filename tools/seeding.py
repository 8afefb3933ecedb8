"""Publishing a run into a real Redis with the lists in hand: the store's own publish sequence
(store.writer.publish_run) with a direct pipelined load in place of the Spark one. Tests,
benchmarks and the soak tool seed the API's Redis with it."""

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
