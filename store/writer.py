"""The writer side of the store: how a run gets in, becomes current, and is removed again.

    report = publish_run(client, keys, policy, manifest, load)   # the publish job, test seeding, benchmarks
    rolled_back_from, now_current = rollback(client, keys, policy)   # python -m store.admin rollback

``publish_run`` is the one publish sequence (docs/store-contract.md, "How a run is published"):
lock, refuse an older run, register, load, verify, write meta, promote, retention. The load is
a callable, so the same sequence serves the Spark job (its executors write the user lists) and
anything that has the lists in hand.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from store.contract import (
    CONTRACT_VERSION,
    DEFAULT_VARIANT,
    KeyLayout,
    check_run_id,
    encode_items,
    encode_mapping,
    encode_meta,
    encode_similar,
    encode_similar_pairs,
    encode_user_list,
    encode_user_pairs,
    run_is_readable,
)
from store.errors import PublishRefused
from store.experiments import published_experiment
from store.lock import publish_lock, renew_publish_lock
from store.memory_budget import MemoryBudget, RunFootprint, check_memory
from store.registry import complete_runs, count_user_keys, current_run, known_runs, read_run_meta, text

log = logging.getLogger("recs.writer")

RankedList = list[tuple[str, float]]
# A run's popular lists: key None is the overall list, any other key a category.
PopularLists = dict[str | None, RankedList]

# Switch the pointer only if the caller still holds the publish lock, the run is registered,
# and (unless rolling back) the run is newer than the current one. Every key here shares the
# {prefix} hash tag, so this is one atomic step on Redis Cluster too.
PROMOTE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return {'lock_lost', current or ''} end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {'unknown_run', current or ''} end
if current and ARGV[2] ~= '1' and ARGV[1] <= current then return {'not_newer', current} end
redis.call('SET', KEYS[1], ARGV[1])
return {'ok', current or ''}
"""


@dataclass(frozen=True)
class PublishPolicy:
    """How publishing behaves: retention, batch size, the lock's TTL, and the share of a run's
    estimated size kept free on top of it in the size check (store.memory_budget)."""

    keep_runs: int
    batch_size: int
    lock_ttl_seconds: float
    memory_margin: float = 0.25

    def __post_init__(self):
        if self.keep_runs < 2:
            raise ValueError("keep_runs must be at least 2: readers may still hold the previous run")
        if self.memory_margin < 0:
            raise ValueError("memory_margin must not be negative")

    @classmethod
    def from_config(cls, publish) -> PublishPolicy:
        """The policy of the config's ``publish`` section."""
        return cls(publish.keep_runs, publish.batch_size, publish.lock_ttl_seconds, publish.memory_margin)


@dataclass(frozen=True)
class LoadedRun:
    """What a load callable reports. It wrote the per-user and per-item keys itself: the user
    lists the run has (one per user and variant) and the item-to-item lists (verification
    expects one key each), and how many keys it wrote and how long that took, when it can tell
    that apart from reading its input. The short documents it hands over for the writer to
    store: popular lists, each item's categories, each category's cold items."""

    user_lists: int
    keys_written: int
    popular: PopularLists
    write_seconds: float | None = None
    similar_lists: int = 0
    item_categories: dict[str, list[str]] = field(default_factory=dict)
    cold: dict[str, list[str]] = field(default_factory=dict)


# Given the run id, write every user's list (encoded by user_list_writes) and report.
RunLoader = Callable[[str], LoadedRun]
# Told the run id each time the pointer moves to it (the current-run record, store.registry).
SwitchRecorder = Callable[[str], None]


def utc_now() -> dt.datetime:
    """The current time in UTC (the publish time written into a run's meta)."""
    return dt.datetime.now(dt.UTC)


def publish_run(
    client,
    keys: KeyLayout,
    policy: PublishPolicy,
    manifest: dict,
    load: RunLoader,
    rollback: bool = False,
    now: Callable[[], dt.datetime] = utc_now,
    on_switch: SwitchRecorder | None = None,
    footprint: Callable[[], RunFootprint] | None = None,
) -> dict:
    """Load a finished run, verify it, and make it current in one atomic step; return a report.

    Refuses a run older than the current one unless ``rollback``; a rollback to a run that is
    still retained and complete switches the pointer without loading anything. ``on_switch``
    is told the run id right after the pointer moved, still under the lock. ``footprint``
    estimates the run's size in Redis: a run that would not fit under maxmemory is refused
    before any of its keys is written."""
    run_id = check_run_id(manifest["run_id"])
    with publish_lock(client, keys, policy.lock_ttl_seconds) as lock:
        current = current_run(client, keys)
        if current == run_id:
            log.info("run %s is already current; nothing to do", run_id)
            return {"status": "already_current", "run_id": run_id}
        if current and run_id < current and not rollback:
            raise PublishRefused(
                f"run {run_id} is older than the current run {current}; pass --rollback to make it current on purpose"
            )
        loaded = _retained(client, keys, run_id) if rollback else None
        if loaded is None:
            # Leftovers of an earlier, unfinished attempt go first, so the size check does not count them.
            delete_run(client, keys, run_id, policy.batch_size)
            budget = _memory_budget(client, keys, policy, run_id, footprint)
            current_meta = read_run_meta(client, keys, current) if current else None
            experiment = published_experiment(manifest.get("experiment"), (current_meta or {}).get("experiment"))
            loaded = _load_verified(client, keys, policy, manifest, experiment, load, now)
            if budget is not None:
                loaded = {**loaded, "memory": budget.measured(client)}
        renew_publish_lock(lock)
        replaced = promote(client, keys, run_id, lock, allow_older=rollback)
        if on_switch is not None:
            on_switch(run_id)
        record_experiment_definition(client, keys, read_run_meta(client, keys, run_id))
        pruned = prune(client, keys, policy.keep_runs, policy.batch_size, also_keep=(replaced,))
    log.info("published run %s (replacing %s): %s; pruned %s", run_id, replaced, loaded, pruned or "nothing")
    return {"status": "published", "run_id": run_id, "replaced_run_id": replaced, **loaded, "pruned_runs": pruned}


def _memory_budget(
    client, keys: KeyLayout, policy: PublishPolicy, run_id: str, footprint: Callable[[], RunFootprint] | None
) -> MemoryBudget | None:
    """The size check of a run about to be loaded (PublishRefused when it does not fit); None
    when the caller has no estimate to give."""
    if footprint is None:
        return None
    retained = len(known_runs(client, keys))
    return check_memory(client, run_id, footprint(), policy.memory_margin, retained, policy.keep_runs)


def _retained(client, keys: KeyLayout, run_id: str) -> dict | None:
    """For a run still complete in the store (a rollback then needs no reload): its list count."""
    meta = read_run_meta(client, keys, run_id)
    if not meta or meta.get("status") != "complete" or not run_is_readable(meta):
        return None  # reloaded from its run folder instead, in this contract's format
    lists, similar = meta["counts"]["user_lists"], meta["counts"].get("similar_lists", 0)
    servable = why_not_servable(client, keys, run_id, lists, similar) is None
    return {"user_lists": lists, "reused": True} if servable else None


def _load_verified(
    client, keys: KeyLayout, policy: PublishPolicy, manifest: dict, experiment: dict | None, load: RunLoader, now
) -> dict:
    """Register, load and verify every key of the run (whose leftovers the caller removed), then
    mark it complete; a run that fails verification is removed again and never becomes current."""
    run_id = manifest["run_id"]
    register_run(client, keys, run_id)
    started = time.monotonic()
    loaded = load(run_id)
    load_seconds = time.monotonic() - started
    write_popular(client, keys, run_id, loaded.popular)
    write_catalogue(client, keys, run_id, loaded.item_categories, loaded.cold)
    problem = why_not_servable(client, keys, run_id, loaded.user_lists, loaded.similar_lists)
    if problem:
        delete_run(client, keys, run_id, policy.batch_size)
        raise PublishRefused(f"{problem}; the run was removed and the current run is unchanged")
    # Only a verified run is marked complete: retention and rollback trust this status.
    meta = build_run_meta(manifest, loaded, now(), experiment)
    write_meta(client, keys, run_id, meta)
    write_seconds = load_seconds if loaded.write_seconds is None else loaded.write_seconds
    return {
        "user_lists": loaded.user_lists,
        "similar_lists": loaded.similar_lists,
        "keys_written": loaded.keys_written,
        "load_seconds": round(load_seconds, 3),
        "write_seconds": round(write_seconds, 3),
        "keys_per_second": round(loaded.keys_written / write_seconds, 1) if write_seconds else None,
    }


def build_run_meta(manifest: dict, loaded: LoadedRun, published_at: dt.datetime, experiment: dict | None) -> dict:
    """The run's meta document in the store, from its manifest, what was loaded, and the
    experiment with its bucket allocation (published_experiment), if the run has one."""
    popular = loaded.popular
    return {
        "contract_version": CONTRACT_VERSION,
        "run_id": manifest["run_id"],
        "run_date": manifest["run_date"],
        "published_at": published_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "status": "complete",
        "code_version": manifest.get("code_version"),
        "counts": {
            "user_lists": loaded.user_lists,
            "similar_lists": loaded.similar_lists,
            "popular_items": len(popular.get(None, [])),
            "categories": len(popular) - 1,
            "catalogue_items": len(loaded.item_categories),
            "cold_items": len({item for items in loaded.cold.values() for item in items}),
        },
        "metrics": headline_metrics(manifest.get("metrics", {})),
        "finalized_at": manifest.get("finalized_at"),
        "timings_seconds": manifest.get("timings_seconds", {}),
        "run_counts": _run_counts(manifest.get("counts", {})),
        "categories": sorted(category for category in popular if category is not None),
        "variants": list(manifest.get("variants") or [DEFAULT_VARIANT]),
        "experiment": experiment,
        "gate": manifest.get("gate"),
    }


def headline_metrics(metrics: dict) -> dict:
    """The manifest's metrics without the per-slice figures, which stay in the run folder: every
    API worker holds the meta of the run it serves."""

    def without_slices(figures):
        return (
            {key: value for key, value in figures.items() if key != "slices"} if isinstance(figures, dict) else figures
        )

    variants = metrics.get("variants")
    return {
        "k": metrics.get("k"),
        "als": without_slices(metrics.get("als")),
        "popularity": without_slices(metrics.get("popularity")),
        "variants": {name: without_slices(v) for name, v in variants.items()}
        if isinstance(variants, dict)
        else variants,
        "cold_start": metrics.get("cold_start"),
        # The bound of the user sample evaluate scored (null: every holdout user); the gate
        # compares runs only when they were scored on the same population.
        "user_sample": (metrics.get("split") or {}).get("user_sample"),
    }


def _run_counts(counts: dict) -> dict:
    """The manifest's headline counts: input and quarantined rows, prepared users, items and pairs."""
    prepared, input_rows = counts.get("prepared", {}), counts.get("input", {})
    return {
        "rows_read": input_rows.get("rows_read"),
        "rows_quarantined": counts.get("quarantine", {}).get("rows"),
        "users": prepared.get("users"),
        "items": prepared.get("items"),
        "pairs": prepared.get("pairs"),
    }


def record_experiment_definition(client, keys: KeyLayout, meta: dict | None) -> None:
    """Keep the current run's experiment definition next to its counters, for the statistics."""
    experiment = (meta or {}).get("experiment")
    if experiment:
        definition = {field: experiment[field] for field in ("name", "salt", "control", "shares")}
        client.set(keys.experiment_definition(experiment["name"]), json.dumps(definition, sort_keys=True))


def user_list_writes(rows: Iterable[tuple], keys: KeyLayout, run_id: str, stored_form: bool = False):
    """(key, value) pairs for per-user lists given as (variant, user_id, items[, seen,
    categories]), encoded by the contract; ``stored_form``: items come from ranked_pairs."""
    encode = encode_user_pairs if stored_form else encode_user_list
    for variant, user_id, items, *context in rows:
        seen, categories = context if context else ((), ())
        yield keys.user_recs(run_id, variant, user_id), encode(items, seen, categories)


def similar_list_writes(
    rows: Iterable[tuple[str, str, RankedList]], keys: KeyLayout, run_id: str, stored_form: bool = False
):
    """(key, value) pairs for item-to-item lists given as (item_id, method, items);
    ``stored_form``: items come from ranked_pairs."""
    encode = encode_similar_pairs if stored_form else encode_similar
    for item_id, method, items in rows:
        yield keys.similar(run_id, item_id), encode(method, items)


def register_run(client, keys: KeyLayout, run_id: str) -> None:
    """Record a run before loading it, so a crashed load can still be found and removed."""
    client.zadd(keys.runs, {run_id: 0})


def write_popular(client, keys: KeyLayout, run_id: str, lists: PopularLists) -> None:
    """Write the popular lists of a run: key None is the overall list, others are categories."""
    pipe = client.pipeline(transaction=False)
    for category, items in lists.items():
        pipe.set(keys.popular(run_id, category), encode_items(items))
    pipe.execute()


def write_meta(client, keys: KeyLayout, run_id: str, meta: dict) -> None:
    """Write a run's meta document."""
    client.set(keys.meta(run_id), encode_meta(meta))


def write_catalogue(client, keys: KeyLayout, run_id: str, item_categories: dict, cold: dict) -> None:
    """Write the run's item-to-categories map and its cold items per category (one key each)."""
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.item_categories(run_id), encode_mapping(item_categories))
    pipe.set(keys.cold(run_id), encode_mapping(cold))
    pipe.execute()


def why_not_servable(client, keys: KeyLayout, run_id: str, user_lists: int, similar_lists: int = 0) -> str | None:
    """Why a loaded run must not become current (wrong key counts, no popular list), or None."""
    loaded = count_user_keys(client, keys, run_id)
    if loaded != user_lists:
        return f"Redis holds {loaded} user keys for run {run_id} but the run has {user_lists} user lists"
    similar = sum(1 for _ in client.scan_iter(match=keys.similar_pattern(run_id), count=1000))
    if similar != similar_lists:
        return f"Redis holds {similar} item-to-item keys for run {run_id} but the run has {similar_lists}"
    if not client.exists(keys.popular(run_id)):
        return f"run {run_id} has no overall popular list"
    return None


def promote(client, keys: KeyLayout, run_id: str, lock, allow_older: bool = False) -> str | None:
    """Make run_id current in one atomic step; return the run it replaced."""
    token = lock.local.token
    outcome, replaced = client.eval(
        PROMOTE_SCRIPT, 3, keys.current, keys.runs, keys.publish_lock, run_id, "1" if allow_older else "0", token
    )
    outcome, replaced = text(outcome), text(replaced) or None
    if outcome == "ok":
        return replaced
    reasons = {
        "lock_lost": "the publish lock expired during the load; raise publish.lock_ttl_seconds",
        "unknown_run": f"run {run_id} is not registered in the store",
        "not_newer": f"run {run_id} is not newer than the current run {replaced}; use a rollback to go back",
    }
    raise PublishRefused(reasons.get(outcome, f"unexpected promote outcome {outcome!r}"))


def rollback(
    client, keys: KeyLayout, policy: PublishPolicy, on_switch: SwitchRecorder | None = None
) -> tuple[str, str]:
    """Under the publish lock, make the newest complete run older than the current one current
    (telling ``on_switch``); return (the run rolled back from, the run now current)."""
    with publish_lock(client, keys, policy.lock_ttl_seconds) as lock:
        rolled_back_from = current_run(client, keys)
        if rolled_back_from is None:
            raise PublishRefused("nothing is published yet, so there is nothing to roll back")
        earlier = [
            run_id
            for run_id in complete_runs(client, keys)
            if run_id < rolled_back_from and run_is_readable(read_run_meta(client, keys, run_id) or {})
        ]
        if not earlier:
            raise PublishRefused(
                f"no retained run older than the current run {rolled_back_from} under store contract "
                f"{CONTRACT_VERSION}; republish an older run folder with `python -m jobs.publish --rollback`"
            )
        promote(client, keys, earlier[0], lock, allow_older=True)
        if on_switch is not None:
            on_switch(earlier[0])
        record_experiment_definition(client, keys, read_run_meta(client, keys, earlier[0]))
    return rolled_back_from, earlier[0]


def prune(client, keys: KeyLayout, keep: int, batch_size: int = 500, also_keep: Iterable[str | None] = ()) -> list[str]:
    """Keep the current run, the newest ``keep`` complete runs and ``also_keep`` (the run just
    replaced, which readers may still hold for a moment); delete every other run."""
    current = current_run(client, keys)
    kept = set(complete_runs(client, keys)[:keep]) | {run_id for run_id in (current, *also_keep) if run_id}
    doomed = [run_id for run_id in known_runs(client, keys) if run_id not in kept]
    for run_id in doomed:
        removed = delete_run(client, keys, run_id, batch_size)
        log.info("retention: removed run %s (%d keys)", run_id, removed)
    return doomed


def delete_run(client, keys: KeyLayout, run_id: str, batch_size: int = 500, pause: float = 1.0) -> int:
    """Remove every key of a run with SCAN and batched UNLINK; return how many were removed.
    After each batch it waits ``pause`` times as long as the batch took, so that a prune under
    load leaves Redis (and the cores it shares) to the lookups at least half of the time."""
    removed, batch = 0, []
    for key in client.scan_iter(match=keys.run_pattern(run_id), count=1000):
        batch.append(key)
        if len(batch) >= batch_size:
            removed += _paced_unlink(client, batch, pause)
            batch = []
    removed += _unlink(client, batch)
    client.zrem(keys.runs, run_id)
    return removed


def _paced_unlink(client, batch: list, pause: float) -> int:
    started = time.monotonic()
    removed = _unlink(client, batch)
    time.sleep(pause * (time.monotonic() - started))
    return removed


def _unlink(client, batch: list) -> int:
    if not batch:
        return 0
    # One key per command: on Redis Cluster the keys of a run live in many slots.
    pipe = client.pipeline(transaction=False)
    for key in batch:
        pipe.unlink(key)
    return sum(pipe.execute())
