"""The reader side of the store, inside each API worker: the cached current run, lookups, and
the one rule that decides when an answer comes from the fallback.

A request reads the run pointer from memory, never from Redis: a watcher thread re-reads it
every ``refresh_seconds`` and, when it moved, loads the new run's meta and popular list before
swapping one immutable snapshot in. Each request takes one snapshot and answers only from it,
so a response always comes from exactly one run, and a personalized lookup is one GET.

When Redis fails, the reader raises StoreUnavailable and, for ``retry_after_seconds``, answers
without trying Redis at all, so an outage costs requests nothing but the fallback; the watcher
keeps probing and clears the outage when Redis answers again. The client is created on first
use, so the API starts even while Redis (or a Redis Cluster, which connects on creation) is down.

Each newly loaded run is also written to the fallback file (store/fallback_file.py), so that a
worker started during an outage (a restart, or the server respawning it) can still answer from the
last run a worker of the same store saw.

When Redis answers but the pointer is gone (it restarted empty, or was flushed), the reader
keeps the run it held, or the fallback file's, and answers from it as during an outage, with
``/readyz`` not ready (``store_lost_current_run``) until a run is published or restored
(``python -m jobs.restore``). Only a reader that never saw a run answers ``no_published_run``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from store.connection import connect, reader_settings, redis_address
from store.contract import (
    CONTRACT_VERSION,
    KeyLayout,
    decode_items,
    decode_mapping,
    decode_meta,
    decode_similar,
    decode_user_list,
    newest_first,
    run_is_readable,
)
from store.errors import (
    NoCurrentRun,
    StoreDataError,
    StoreError,
    StoreUnavailable,
    UnknownCategory,
    UnknownItem,
    UnknownVariant,
    unavailable_reason,
)
from store.experiments import variant_or_default
from store.fallback_file import FallbackFile
from store.registry import text
from store.snapshot import RunSnapshot

log = logging.getLogger("recs.reader")

RankedList = Sequence[tuple[str, float]]
PERSONALIZED, POPULAR, FALLBACK = "personalized", "popular", "fallback"
DOWN_MODE_FALLBACK = "fallback"
LOST_CURRENT_RUN = "store_lost_current_run"
# Run keys carry no TTL, so only these policies can evict them once maxmemory is reached.
EVICTING_POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


@dataclass(frozen=True)
class Answer:
    """A list to serve: the run it came from, where in that run (``source``), its items, and
    for a user's list the experiment and variant it belongs to, whether that was forced, the
    popular-list items the user has seen and their strongest categories; with the snapshot it
    came from, for filtering."""

    run_id: str
    source: str
    items: RankedList
    snapshot: RunSnapshot | None = None
    experiment: str | None = None
    variant: str | None = None
    forced: bool = False
    seen: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


class StoreReader:
    """Lookups against the current run, with the pointer cached and refreshed in the background."""

    def __init__(
        self,
        connect_client: Callable[[], object],
        keys: KeyLayout,
        refresh_seconds: float = 1.0,
        retry_after_seconds: float = 1.0,
        down_mode: str = DOWN_MODE_FALLBACK,
        fallback_file: FallbackFile | None = None,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[float, bool], None] | None = None,
    ):
        self._connect = connect_client
        self._client_instance = None
        self._client_lock = threading.Lock()
        self._keys = keys
        self._refresh_seconds = refresh_seconds
        self._retry_after = retry_after_seconds
        self._down_mode = down_mode
        self._fallback_file = fallback_file
        self._clock = clock
        self._observe = observe
        self._snapshot: RunSnapshot | None = None
        self._down_until = 0.0
        self._refresh_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pointer_lost = False
        self._fallback_file_consulted = False
        self._policy_checked = False
        self._policy_warned: str | None = None
        self._policy_unreadable_logged = False

    @classmethod
    def from_config(cls, cfg, observe: Callable[[float, bool], None] | None = None) -> StoreReader:
        """The reader the ``store`` and ``api`` sections describe; ``observe`` gets each Redis
        call's seconds and whether it failed (for metrics)."""
        settings = reader_settings(cfg.store)
        fallback = None
        # In "unavailable" mode an outage answers 503, so a stored fallback would never be used.
        if cfg.api.fallback_file and cfg.api.down_mode == DOWN_MODE_FALLBACK:
            store_name = f"{redis_address(settings.url)} prefix={cfg.store.key_prefix}"
            fallback = FallbackFile(cfg.api.fallback_file, store_name, cfg.api.fallback_max_age_seconds)
        return cls(
            lambda: connect(settings),
            KeyLayout(cfg.store.key_prefix),
            refresh_seconds=cfg.api.pointer_refresh_seconds,
            retry_after_seconds=cfg.api.retry_after_seconds,
            down_mode=cfg.api.down_mode,
            fallback_file=fallback,
            observe=observe,
        )

    def recommendations(self, user_id: str, forced_variant: str | None = None, first: int | None = None) -> Answer:
        """A user's list in their variant (or ``forced_variant``, for QA): personalized if the
        current run knows the user, else its popular list. With an experiment running, the
        same round trip records that the user was served their variant. With ``first``, a
        personalized answer holds only the stored list's first that many items."""
        snapshot = self.current()
        assignment = snapshot.assignment
        if forced_variant is not None and forced_variant not in snapshot.variants:
            variants = ", ".join(snapshot.variants)
            raise UnknownVariant(
                f"variant {forced_variant!r} is not in run {snapshot.run_id}; its variants are {variants}"
            )
        variant = forced_variant or variant_or_default(assignment, user_id)
        key = self._keys.user_recs(snapshot.run_id, variant, user_id)

        def fetch():
            if assignment is None or forced_variant is not None:
                return self._client().get(key)
            # One round trip; counting the assignment is best effort and never fails the lookup.
            pipe = self._client().pipeline(transaction=False)
            pipe.get(key)
            pipe.pfadd(self._keys.experiment_data(assignment.name, assignment.salt, "assigned", variant), user_id)
            found, counted = pipe.execute(raise_on_error=False)
            if isinstance(found, Exception):
                raise found
            if isinstance(counted, Exception):
                log.warning("could not count the assignment of a user to %s/%s: %s", assignment.name, variant, counted)
            return found

        labels = {"experiment": assignment.name if assignment else None, "variant": variant,
                  "forced": forced_variant is not None}  # fmt: skip

        def lookup() -> Answer:
            raw = self._call(fetch)
            if raw is None:
                return Answer(snapshot.run_id, POPULAR, snapshot.popular, snapshot, **labels)
            try:
                items, seen, categories = decode_user_list(raw, first)
            except ValueError as exc:
                raise StoreDataError(str(exc)) from exc
            return Answer(snapshot.run_id, PERSONALIZED, items, snapshot, **labels, seen=tuple(seen),
                          categories=tuple(categories))  # fmt: skip

        answer = self._answer_or_fallback(snapshot, lookup)
        # Built once with its labels on the lookup path; only a fallback answer still needs them.
        return answer if answer.variant == variant else replace(answer, **labels)

    def similar(self, item_id: str) -> tuple[str, str, RankedList]:
        """An item's item-to-item list in the current run: (run id, method, items); one GET."""
        snapshot = self.current()
        if snapshot.from_fallback_file:
            # The run's item lists are not (or no longer) known to be in Redis: not an unknown item.
            raise StoreUnavailable(f"run {snapshot.run_id} is served from the fallback; item lists are unavailable")
        raw = self._call(lambda: self._client().get(self._keys.similar(snapshot.run_id, item_id)))
        if raw is None:
            raise UnknownItem(f"item {item_id!r} has no item-to-item list in run {snapshot.run_id}")
        try:
            method, items = decode_similar(raw)
        except ValueError as exc:
            raise StoreDataError(str(exc)) from exc
        return snapshot.run_id, method, items

    def popular(self, category: str | None = None) -> Answer:
        """The overall popular list, or one category's: both from memory."""
        snapshot = self.current()
        items = snapshot.popular if category is None else self.category_list(snapshot, category)
        source = FALLBACK if snapshot.from_fallback_file else POPULAR
        return Answer(snapshot.run_id, source, items, snapshot)

    @staticmethod
    def category_list(snapshot: RunSnapshot, category: str) -> RankedList:
        """A category's popular list in the snapshot; UnknownCategory for one the run does not have."""
        if category not in snapshot.category_popular:
            raise UnknownCategory(f"category {category!r} is not in run {snapshot.run_id}")
        return snapshot.category_popular[category]

    def _answer_or_fallback(self, snapshot: RunSnapshot, lookup: Callable[[], Answer]) -> Answer:
        """The fallback rule, in one place: the run's overall popular list, held in memory, answers
        (source ``fallback``) when the snapshot came from the fallback file and Redis has not been
        seen since, or when Redis fails during the lookup and ``down_mode`` is ``fallback``."""
        if snapshot.from_fallback_file:
            return Answer(snapshot.run_id, FALLBACK, snapshot.popular, snapshot)
        try:
            answer = lookup()
        except StoreUnavailable:
            if self._down_mode != DOWN_MODE_FALLBACK:
                raise
            return Answer(snapshot.run_id, FALLBACK, snapshot.popular, snapshot)
        return answer if answer.snapshot is snapshot else replace(answer, snapshot=snapshot)

    def readiness(self, now: dt.datetime) -> tuple[bool, dict]:
        """Whether the API can serve: Redis answers and a current run exists, with that run's age;
        with ``warnings`` about Redis settings that put the run at risk (readiness stands)."""
        reason = self.unavailable_reason()
        if reason is not None:
            return False, {"ready": False, "reason": reason}
        warnings = self.eviction_warnings()
        extra = {"warnings": warnings} if warnings else {}
        try:
            snapshot = self.refresh()
        except StoreDataError:
            return False, {"ready": False, "reason": "store_data_error", **extra}
        except (StoreUnavailable, NoCurrentRun):
            snapshot = None
        if snapshot is None:
            return False, {"ready": False, "reason": "no_published_run", **extra}
        if snapshot.from_fallback_file:
            # Redis answered the refresh, yet the run is still the fallback's: the pointer is gone.
            return False, {"ready": False, "reason": LOST_CURRENT_RUN, "run_id": snapshot.run_id, **extra}
        published = dt.datetime.fromisoformat(snapshot.meta["published_at"])
        return True, {
            "ready": True,
            "run_id": snapshot.run_id,
            "published_at": snapshot.meta["published_at"],
            "age_seconds": round((now - published).total_seconds(), 3),
            **extra,
        }

    def eviction_warnings(self) -> list[str]:
        """``eviction_policy_may_evict_run_keys: <policy>`` when Redis has a memory limit and an
        ``allkeys-*`` policy; nothing when the policy cannot evict run keys or cannot be read."""
        policy = self._evicting_policy()
        return [f"eviction_policy_may_evict_run_keys: {policy}"] if policy else []

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
                return self._held_after_pointer_lost()
            run_id = pointer.decode("utf-8") if isinstance(pointer, bytes) else pointer
            held = self._snapshot
            if held is None or held.run_id != run_id or held.from_fallback_file:
                self._snapshot = self._load(run_id)
                if self._fallback_file:
                    self._fallback_file.write(self._snapshot)
                if self._pointer_lost:
                    log.info("the store has a current run again")
                    self._pointer_lost = False
                log.info("serving run %s", run_id)
            return self._snapshot

    def _held_after_pointer_lost(self) -> RunSnapshot | None:
        """Redis answers without a current pointer. A reader that held a run (or finds one in the
        fallback file) keeps it, marked as fallback, and keeps the file: a Redis that restarted
        empty is not a store that was meant to be empty. Called under the refresh lock."""
        held = self._snapshot
        if held is None and self._fallback_file is not None and not self._fallback_file_consulted:
            # Once: a file that is unusable now (another store's, too old) stays so.
            self._fallback_file_consulted = True
            held = self._fallback_file.read()
        if held is None:
            return None
        if not self._pointer_lost:
            self._pointer_lost = True
            log.warning(
                "Redis answers but has no current run (restarted empty or flushed?); answering from run %s's "
                "popular lists as fallback until a run is published or restored (python -m jobs.restore)",
                held.run_id,
            )
        # The same marking as a run read from the fallback file: not confirmed by Redis.
        self._snapshot = held if held.from_fallback_file else replace(held, from_fallback_file=True)
        return self._snapshot

    def runs(self) -> tuple[str | None, list[dict]]:
        """The current run id and every registered run's meta document, newest first (a run
        that never finished loading has a meta of just its id and status)."""

        def fetch():
            client = self._client()
            current = client.get(self._keys.current)
            ids = newest_first([value.decode("utf-8") if isinstance(value, bytes) else value
                                for value in client.zrange(self._keys.runs, 0, -1)])  # fmt: skip
            pipe = client.pipeline(transaction=False)
            for run_id in ids:
                pipe.get(self._keys.meta(run_id))
            return current, ids, pipe.execute()

        current, ids, metas = self._call(fetch)
        try:
            documents = [decode_meta(raw) if raw else {"run_id": run_id, "status": "incomplete"}
                         for run_id, raw in zip(ids, metas, strict=True)]  # fmt: skip
        except ValueError as exc:
            raise StoreDataError(str(exc)) from exc
        return (current.decode("utf-8") if isinstance(current, bytes) else current), documents

    def held(self) -> RunSnapshot | None:
        """The snapshot this reader holds right now, without touching Redis (None before any)."""
        return self._snapshot

    def lost_current_run(self) -> bool:
        """Whether Redis answers without a current run while this reader serves a run it held
        (or the fallback file's) as fallback: Redis restarted empty or was flushed."""
        return self._pointer_lost

    def in_outage(self) -> bool:
        """Whether Redis failed moments ago (requests skip it until the retry time)."""
        return self._clock() < self._down_until

    def ping(self) -> bool:
        """Whether Redis answers right now (always a real round trip)."""
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        """None when Redis answers right now, else why not (redis_unreachable, redis_auth_failed...)."""
        try:
            self._call(lambda: self._client().ping(), probe=True)
            return None
        except StoreUnavailable as exc:
            return exc.reason

    def close(self) -> None:
        """Stop the watcher thread and close the Redis client (tests and shutdown)."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        if self._client_instance is not None:
            self._client_instance.close()

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
        """The run's meta, popular lists, item categories and cold items: two round trips."""
        keys = self._keys
        first = self._fetch([keys.meta(run_id), keys.popular(run_id), keys.item_categories(run_id), keys.cold(run_id)])
        meta_raw, popular_raw, categories_raw, cold_raw = first
        try:
            meta = decode_meta(meta_raw) if meta_raw is not None else None
        except ValueError as exc:
            raise StoreDataError(f"run {run_id}: {exc}") from exc
        if meta is not None and not run_is_readable(meta):
            raise StoreDataError(
                f"run {run_id} was published under store contract {meta['contract_version']}, this API reads "
                f"{CONTRACT_VERSION}; publish a run with this version (docs/store-contract.md, Upgrading)"
            )
        if any(raw is None for raw in first):
            raise StoreDataError(f"run {run_id} is current but its meta, popular list or catalogue is missing")
        try:
            categories = list(meta["categories"])
            lists = self._fetch([keys.popular(run_id, category) for category in categories]) if categories else []
            return RunSnapshot(
                run_id, meta, tuple(decode_items(popular_raw)),
                {category: tuple(decode_items(raw)) for category, raw in zip(categories, lists, strict=True) if raw},
                decode_mapping(categories_raw), decode_mapping(cold_raw),
            )  # fmt: skip
        except (ValueError, TypeError) as exc:
            raise StoreDataError(f"run {run_id}: {exc}") from exc

    def _fetch(self, keys: list[str]) -> list:
        def fetch():
            pipe = self._client().pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return pipe.execute()

        return self._call(fetch, probe=True)

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
        started = time.perf_counter()
        try:
            result = func()
        except (RedisError, RedisClusterException, OSError) as exc:
            self._down_until = self._clock() + self._retry_after
            self._observed(started, failed=True)
            raise StoreUnavailable(f"Redis unavailable: {exc!r}", unavailable_reason(exc)) from exc
        self._observed(started, failed=False)
        self._down_until = 0.0
        return result

    def _observed(self, started: float, failed: bool) -> None:
        if self._observe is not None:
            self._observe(time.perf_counter() - started, failed)

    def _start_watcher(self) -> None:
        if self._stopping.is_set() or (self._watcher is not None and self._watcher.is_alive()):
            return
        with self._refresh_lock:
            if self._watcher is None or not self._watcher.is_alive():
                # Started on first use, so that each server worker process starts its own.
                self._watcher = threading.Thread(target=self._watch, name="recs-pointer-watcher", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self._refresh_seconds):
            if not self._policy_checked and not self.in_outage():
                # At start, off the request path, until Redis has answered CONFIG (or refused it).
                self._evicting_policy()
            try:
                self.refresh()
            except StoreError as exc:
                log.warning("pointer refresh failed: %s", exc)

    def _evicting_policy(self) -> str | None:
        """Redis's eviction policy when it could evict run keys (warned about once), else None.
        CONFIG may be renamed, disabled or denied by an ACL: then nothing is known (logged once)."""
        from redis.exceptions import RedisClusterException, RedisError, ResponseError

        try:
            settings = self._client().config_get("maxmemory*")
        except ResponseError as exc:
            self._policy_checked = True
            if not self._policy_unreadable_logged:
                self._policy_unreadable_logged = True
                log.info("cannot read Redis's eviction policy (CONFIG GET refused: %s); not checking it", exc)
            return None
        except (RedisError, RedisClusterException, OSError):
            return None  # an outage; readiness reports it
        self._policy_checked = True
        policy = text(settings.get("maxmemory-policy")) or ""
        limited = int(text(settings.get("maxmemory")) or 0) > 0
        if not (limited and policy in EVICTING_POLICIES):
            self._policy_warned = None
            return None
        if self._policy_warned != policy:
            self._policy_warned = policy
            log.warning(
                "Redis's maxmemory-policy is %s with a memory limit: it may evict the current run's keys "
                "(they have no TTL); use noeviction or a volatile-* policy",
                policy,
            )
        return policy
