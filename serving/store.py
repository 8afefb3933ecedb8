"""The API's read side of the store: the cached current run, lookups, and typed errors.

A request reads the run pointer from memory, never from Redis: a watcher thread re-reads it
every ``refresh_seconds`` and, when it moved, loads the new run's meta and popular list before
swapping one immutable snapshot in. Each request takes one snapshot and answers only from it,
so a response always comes from exactly one run, and a personalized lookup is one GET.

When Redis fails, the store raises StoreUnavailable and, for ``retry_after_seconds``, answers
without trying Redis at all, so an outage costs requests nothing but the fallback; the watcher
keeps probing and clears the outage when Redis answers again. The client is created on first
use, so the API starts even while Redis (or a Redis Cluster, which connects on creation) is down.

Each newly loaded run is also written to the fallback file (serving/fallback_file.py), so that
a worker started during an outage (a restart, or gunicorn recycling it) can still answer from
the last run a worker of the same store saw.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from serving.contract import KeyLayout, decode_items, decode_meta
from serving.fallback_file import FallbackFile
from serving.snapshot import RunSnapshot

log = logging.getLogger("recs.store")

RankedList = list[tuple[str, float]]


class StoreError(Exception):
    """Base of the errors the store raises; the API maps each to one HTTP answer."""


class StoreUnavailable(StoreError):
    """Redis could not be reached, or did not answer in time."""


class NoCurrentRun(StoreError):
    """Redis answers but nothing has been published yet."""


class StoreDataError(StoreError):
    """A value in Redis does not follow the store contract."""


class RecommendationStore:
    """Lookups against the current run, with the pointer cached and refreshed in the background."""

    def __init__(
        self,
        connect: Callable[[], object],
        keys: KeyLayout,
        refresh_seconds: float = 1.0,
        retry_after_seconds: float = 1.0,
        fallback_file: FallbackFile | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._connect = connect
        self._client_instance = None
        self._keys = keys
        self._refresh_seconds = refresh_seconds
        self._retry_after = retry_after_seconds
        self._fallback_file = fallback_file
        self._client_lock = threading.Lock()
        self._clock = clock
        self._snapshot: RunSnapshot | None = None
        self._down_until = 0.0
        self._refresh_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()

    def current(self) -> RunSnapshot:
        """The current run; reads Redis only the first time, then the watcher keeps it fresh."""
        self._start_watcher()
        snapshot = self._snapshot
        if snapshot is None:
            try:
                snapshot = self.refresh()
            except StoreUnavailable:
                snapshot = self._snapshot_from_fallback_file()
                if snapshot is None:
                    raise
        if snapshot is None:
            raise NoCurrentRun("no run has been published to the store yet")
        return snapshot

    def refresh(self) -> RunSnapshot | None:
        """Re-read the pointer; load the run's meta and popular list if it moved."""
        with self._refresh_lock:
            pointer = self._call(lambda: self._client().get(self._keys.current), probe=True)
            if pointer is None:
                self._snapshot = None
                if self._fallback_file:
                    self._fallback_file.remove()
                return None
            run_id = pointer.decode("utf-8") if isinstance(pointer, bytes) else pointer
            held = self._snapshot
            if held is None or held.run_id != run_id or held.from_fallback_file:
                self._snapshot = self._load(run_id)
                if self._fallback_file:
                    self._fallback_file.write(self._snapshot)
                log.info("serving run %s", run_id)
            return self._snapshot

    def _snapshot_from_fallback_file(self) -> RunSnapshot | None:
        """At start-up with Redis down: the fallback file's run, if there is a usable one."""
        if self._fallback_file is None:
            return None
        with self._refresh_lock:
            if self._snapshot is None:
                self._snapshot = self._fallback_file.read()
                if self._snapshot is not None:
                    log.warning(
                        "Redis unavailable; answering from %s (run %s)", self._fallback_file.path, self._snapshot.run_id
                    )
            return self._snapshot

    def _load(self, run_id: str) -> RunSnapshot:

        def fetch():
            pipe = self._client().pipeline(transaction=False)
            pipe.get(self._keys.run_meta(run_id))
            pipe.get(self._keys.popular(run_id))
            return pipe.execute()

        meta_raw, popular_raw = self._call(fetch, probe=True)
        if meta_raw is None or popular_raw is None:
            raise StoreDataError(f"run {run_id} is current but its meta or popular list is missing")
        try:
            return RunSnapshot(run_id, decode_meta(meta_raw), tuple(decode_items(popular_raw)))
        except ValueError as exc:
            raise StoreDataError(f"run {run_id}: {exc}") from exc

    def user_items(self, snapshot: RunSnapshot, user_id: str) -> RankedList | None:
        """A known user's list in the snapshot's run, or None for a user the run does not know."""
        key = self._keys.user_recs(snapshot.run_id, user_id)
        return self._ranked(self._call(lambda: self._client().get(key)))

    def category_items(self, snapshot: RunSnapshot, category: str) -> RankedList | None:
        """A category's popular list in the snapshot's run, or None for an unknown category."""
        key = self._keys.popular(snapshot.run_id, category)
        return self._ranked(self._call(lambda: self._client().get(key)))

    def ping(self) -> bool:
        """Whether Redis answers right now (always a real round trip)."""
        try:
            self._call(lambda: self._client().ping(), probe=True)
            return True
        except StoreUnavailable:
            return False

    def close(self) -> None:
        """Stop the watcher thread and close the Redis client (tests and shutdown)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        if self._client_instance is not None:
            self._client_instance.close()

    def _ranked(self, raw) -> RankedList | None:
        if raw is None:
            return None
        try:
            return decode_items(raw)
        except ValueError as exc:
            raise StoreDataError(str(exc)) from exc

    def _client(self):
        if self._client_instance is None:
            with self._client_lock:
                if self._client_instance is None:
                    self._client_instance = self._connect()
        return self._client_instance

    def _call(self, func: Callable[[], object], probe: bool = False):
        """Run one Redis call; map any Redis failure to StoreUnavailable and remember the outage."""
        from redis.exceptions import RedisClusterException, RedisError

        if not probe and self._clock() < self._down_until:
            raise StoreUnavailable("Redis failed moments ago; not retrying yet")
        try:
            result = func()
        except (RedisError, RedisClusterException, OSError) as exc:
            self._down_until = self._clock() + self._retry_after
            raise StoreUnavailable(f"Redis unavailable: {exc!r}") from exc
        self._down_until = 0.0
        return result

    def _start_watcher(self) -> None:
        if self._stopping.is_set() or (self._watcher is not None and self._watcher.is_alive()):
            return
        with self._refresh_lock:
            if self._watcher is None or not self._watcher.is_alive():
                # Started on first use, so under gunicorn each worker starts its own after the fork.
                self._watcher = threading.Thread(target=self._watch, name="recs-pointer-watcher", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self._refresh_seconds):
            try:
                self.refresh()
            except StoreError as exc:
                log.warning("pointer refresh failed: %s", exc)
