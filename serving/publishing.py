"""Run lifecycle in the store: the publish lock, registering and deleting runs, the atomic
pointer switch, rollback and retention. Used by the publish job (jobs/publish.py) and the
admin CLI (serving/admin.py); the key names come from serving.contract."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from serving.contract import KeyLayout, decode_meta, encode_items, encode_meta, newest_first
from serving.redis_conn import RedisSettings

log = logging.getLogger("recs.publishing")

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


class PublishRefused(RuntimeError):
    """The store refused a publish, rollback or prune; the message says why."""


def publisher_settings(publish_cfg: dict) -> RedisSettings:
    """Redis settings for the publisher and admin commands, from the pipeline's ``publish`` section."""
    timeout = float(publish_cfg["socket_timeout_seconds"])
    return RedisSettings(
        url=publish_cfg["redis_url"],
        cluster=bool(publish_cfg["redis_cluster"]),
        socket_timeout=timeout,
        connect_timeout=timeout,
        retries=3,
        max_connections=8,
        client_name="recs-publish",
    )


def text(value: bytes | str | None) -> str | None:
    """Redis replies as str (or None), whatever the client's decode setting."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def acquire_publish_lock(client, keys: KeyLayout, ttl_seconds: float):
    """Take the publish lock without waiting, or refuse: only one publisher at a time."""
    lock = client.lock(keys.publish_lock, timeout=ttl_seconds, blocking=False, thread_local=False)
    if not lock.acquire(blocking=False):
        remaining = client.pttl(keys.publish_lock)
        raise PublishRefused(
            f"another publisher holds {keys.publish_lock} (expires in {max(remaining, 0) / 1000:.0f}s)"
        )
    return lock


@contextmanager
def publish_lock(client, keys: KeyLayout, ttl_seconds: float) -> Iterator:
    """Hold the publish lock for the block (refusing if another publisher has it), then release it."""
    lock = acquire_publish_lock(client, keys, ttl_seconds)
    try:
        yield lock
    finally:
        release_publish_lock(lock)


@contextmanager
def lock_kept_alive(lock, every_seconds: float) -> Iterator[None]:
    """Renew the lock's TTL in the background while a publish runs; refuse if it was lost.

    A failed renewal (Redis briefly unreachable) is retried at the next tick; only a lock that
    another process now holds counts as lost. The pointer switch checks the token as well."""
    from redis.exceptions import LockError, RedisError

    stop, lost = threading.Event(), []

    def renew() -> None:
        while not stop.wait(every_seconds):
            try:
                lock.reacquire()
            except LockError as exc:
                lost.append(exc)
                return
            except RedisError as exc:
                log.warning("could not renew the publish lock, retrying: %s", exc)

    renewer = threading.Thread(target=renew, name="recs-lock-renewer", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
    if lost:
        raise PublishRefused("the publish lock was lost during the load; another publisher may have taken over")


def renew_publish_lock(lock) -> None:
    """Reset the lock's TTL now, or refuse if another process holds it."""
    from redis.exceptions import LockError

    try:
        lock.reacquire()
    except LockError as exc:
        raise PublishRefused("the publish lock was lost; raise publish.lock_ttl_seconds") from exc


def release_publish_lock(lock) -> None:
    """Release the lock if this process still holds it."""
    from redis.exceptions import LockError

    try:
        lock.release()
    except LockError:
        log.warning("publish lock had already expired before release")


def current_run(client, keys: KeyLayout) -> str | None:
    """The run id the pointer names, or None before the first publish."""
    return text(client.get(keys.current))


def known_runs(client, keys: KeyLayout) -> list[str]:
    """Every run id registered in the store, newest first."""
    return newest_first([text(run_id) for run_id in client.zrange(keys.runs, 0, -1)])


def run_meta(client, keys: KeyLayout, run_id: str) -> dict | None:
    """A run's meta document, or None when it has none (never finished loading)."""
    raw = client.get(keys.run_meta(run_id))
    return None if raw is None else decode_meta(raw)


def register_run(client, keys: KeyLayout, run_id: str) -> None:
    """Record a run before loading it, so a crashed load can still be found and removed."""
    client.zadd(keys.runs, {run_id: 0})


def delete_run(client, keys: KeyLayout, run_id: str, batch_size: int = 500) -> int:
    """Remove every key of a run with SCAN and batched UNLINK; return how many were removed."""
    removed, batch = 0, []
    for key in client.scan_iter(match=keys.run_pattern(run_id), count=1000):
        batch.append(key)
        if len(batch) >= batch_size:
            removed += _unlink(client, batch)
            batch = []
    removed += _unlink(client, batch)
    client.zrem(keys.runs, run_id)
    return removed


def _unlink(client, batch: list) -> int:
    if not batch:
        return 0
    # One key per command: on Redis Cluster the keys of a run live in many slots.
    pipe = client.pipeline(transaction=False)
    for key in batch:
        pipe.unlink(key)
    return sum(pipe.execute())


def run_is_servable(client, keys: KeyLayout, run_id: str, users: int) -> str | None:
    """Why a loaded run must not become current (wrong user count, no popular list), or None."""
    loaded = count_user_keys(client, keys, run_id)
    if loaded != users:
        return f"Redis holds {loaded} user keys for run {run_id} but the run has {users} users"
    if not client.exists(keys.popular(run_id)):
        return f"run {run_id} has no overall popular list"
    return None


def count_user_keys(client, keys: KeyLayout, run_id: str) -> int:
    """How many per-user keys of a run exist in the store (SCAN over every node)."""
    return sum(1 for _ in client.scan_iter(match=keys.user_pattern(run_id), count=1000))


def write_popular(client, keys: KeyLayout, run_id: str, lists: dict[str | None, list[tuple[str, float]]]) -> None:
    """Write the popular lists of a run: key None is the overall list, others are categories."""
    pipe = client.pipeline(transaction=False)
    for category, items in lists.items():
        pipe.set(keys.popular(run_id, category), encode_items(items))
    pipe.execute()


def write_meta(client, keys: KeyLayout, run_id: str, meta: dict) -> None:
    """Write a run's meta document."""
    client.set(keys.run_meta(run_id), encode_meta(meta))


def promote(client, keys: KeyLayout, run_id: str, lock, allow_older: bool = False) -> str | None:
    """Make run_id current in one atomic step; return the run it replaced."""
    token = lock.local.token
    outcome, previous = client.eval(
        PROMOTE_SCRIPT, 3, keys.current, keys.runs, keys.publish_lock, run_id, "1" if allow_older else "0", token
    )
    outcome, previous = text(outcome), text(previous) or None
    if outcome == "ok":
        return previous
    reasons = {
        "lock_lost": "the publish lock expired during the load; raise publish.lock_ttl_seconds",
        "unknown_run": f"run {run_id} is not registered in the store",
        "not_newer": f"run {run_id} is not newer than the current run {previous}; use a rollback to go back",
    }
    raise PublishRefused(reasons.get(outcome, f"unexpected promote outcome {outcome!r}"))


def complete_runs(client, keys: KeyLayout) -> list[str]:
    """Registered runs whose meta says they finished loading, newest first."""
    return [
        run_id
        for run_id in known_runs(client, keys)
        if (run_meta(client, keys, run_id) or {}).get("status") == "complete"
    ]


def rollback(client, keys: KeyLayout, lock) -> tuple[str, str]:
    """Make the newest complete run older than the current one current; return (from, to)."""
    current = current_run(client, keys)
    if current is None:
        raise PublishRefused("nothing is published yet, so there is nothing to roll back")
    earlier = [run_id for run_id in complete_runs(client, keys) if run_id < current]
    if not earlier:
        raise PublishRefused(f"no retained run older than the current run {current}")
    promote(client, keys, earlier[0], lock, allow_older=True)
    return current, earlier[0]


def prune(client, keys: KeyLayout, keep: int, batch_size: int = 500, also_keep: Iterable[str | None] = ()) -> list[str]:
    """Keep the current run, the newest ``keep`` complete runs and ``also_keep`` (the run just
    replaced, which readers may still hold for a moment); delete every other run."""
    if keep < 2:
        raise PublishRefused("publish.keep_runs must be at least 2: readers may still hold the previous run")
    current = current_run(client, keys)
    kept = set(complete_runs(client, keys)[:keep]) | {run_id for run_id in (current, *also_keep) if run_id}
    doomed = [run_id for run_id in known_runs(client, keys) if run_id not in kept]
    for run_id in doomed:
        removed = delete_run(client, keys, run_id, batch_size)
        log.info("retention: removed run %s (%d keys)", run_id, removed)
    return doomed


def user_list_writes(rows: Iterable[tuple[str, list[tuple[str, float]]]], keys: KeyLayout, run_id: str):
    """(key, value) pairs for per-user lists, encoded by the contract."""
    for user_id, items in rows:
        yield keys.user_recs(run_id, user_id), encode_items(items)
