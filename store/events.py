"""Recording what users did with their lists: one Redis Stream of every accepted event, and the
experiment counters the statistics read, written together by one Lua script.

    log = EventLog(connect_client, keys, in_outage)
    log.record([(event, attribute(event, assignment)), ...], idempotency_key=None)

An event is attributed to an experiment variant by its ``rec_id`` (the response it is about),
else by the ``variant`` the client names, else by the user's assignment in the current
experiment. It counts only for the current experiment, and not when the response was forced
(QA) or a fallback.

A batch is written by one script: Redis runs it whole, with nothing else in between. The
client does not retry it on its own (a retried batch could count twice); a client that retries
after a timeout sends the same ``Idempotency-Key`` and a batch already applied is not applied
again. Durability is Redis's: a Redis that keeps events must run with the append-only file
(``appendfsync always`` loses nothing a client was told was accepted). See the README.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from store.contract import KeyLayout
from store.errors import StoreUnavailable
from store.experiment_report import experiment_report
from store.experiments import Assignment, RecId

# KEYS[1] the stream, KEYS[2] the idempotency key, KEYS[3..] counter keys; ARGV[1] the
# idempotency token ('' for none), ARGV[2] its TTL, ARGV[3] the events as JSON.
RECORD_SCRIPT = """
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then return -1 end
end
local events = cjson.decode(ARGV[3])
for _, event in ipairs(events) do
  redis.call('XADD', KEYS[1], '*', unpack(event['f']))
  if event['c'] > 0 then redis.call('HINCRBY', KEYS[event['c']], event['h'], 1) end
  if event['x'] > 0 then redis.call('SADD', KEYS[event['x']], event['u']) end
end
return #events
"""
NO_IDEMPOTENCY = "none"


@dataclass(frozen=True)
class Event:
    """One thing a user did with an item: impression, click or conversion."""

    user_id: str
    item_id: str
    type: str
    ts: float | None = None  # when it happened, epoch seconds, if the client says
    rec_id: RecId | None = None
    variant: str | None = None


@dataclass(frozen=True)
class Attribution:
    """Which experiment variant an event belongs to, and whether it counts for it."""

    experiment: str | None
    variant: str | None
    counted: bool
    salt: str | None = None


def attribute(event: Event, assignment: Assignment | None) -> Attribution:
    """The event's experiment variant: its rec_id's, else the variant it names, else the user's
    assignment. It counts only for the experiment being served, for a variant of it, and not
    when its response was forced or a fallback."""
    current = assignment.name if assignment else None
    salt = assignment.salt if assignment else None
    if event.rec_id is not None:
        rec = event.rec_id
        counted = rec.counted and current is not None and rec.experiment == current
        counted = counted and rec.variant in assignment.variants
        return Attribution(rec.experiment, rec.variant, counted, salt if counted else None)
    if assignment is None:
        return Attribution(None, event.variant, False)
    variant = event.variant or assignment.variant_for(event.user_id)
    return Attribution(current, variant, variant in assignment.variants, salt)


def stream_fields(event: Event, attribution: Attribution) -> dict[str, str]:
    """The stream entry of an event: every field as text, empty when absent."""
    return {
        "user_id": event.user_id,
        "item_id": event.item_id,
        "type": event.type,
        "ts": "" if event.ts is None else repr(float(event.ts)),
        "rec_id": "" if event.rec_id is None else str(event.rec_id),
        "experiment": attribution.experiment or "",
        "variant": attribution.variant or "",
        "counted": "1" if attribution.counted else "0",
    }


class EventLog:
    """Appends events to the stream and updates the experiment counters, atomically."""

    def __init__(
        self,
        connect_client: Callable[[], object],
        keys: KeyLayout,
        in_outage: Callable[[], bool] = lambda: False,
        idempotency_ttl_seconds: int = 86_400,
        observe: Callable[[float, bool], None] | None = None,
    ):
        self._connect = connect_client
        self._observe = observe
        self._client_instance = None
        self._keys = keys
        self._in_outage = in_outage
        self._idempotency_ttl = idempotency_ttl_seconds

    def record(self, events: Iterable[tuple[Event, Attribution]], idempotency_key: str | None = None) -> int | None:
        """Write a batch in one script; return how many were written, or None when a batch with
        the same idempotency key was already applied (then nothing is written again)."""
        from redis.exceptions import RedisClusterException, RedisError

        if self._in_outage():
            raise StoreUnavailable("Redis failed moments ago; events not recorded")
        keys, argv = self._script_arguments(list(events), idempotency_key)
        try:
            written = self._timed(lambda: self._client().eval(RECORD_SCRIPT, len(keys), *keys, *argv))
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"events not recorded: {exc!r}") from exc
        return None if written == -1 else int(written)

    def report(self, name: str) -> dict | None:
        """An experiment's statistics from the stored counters, or None if it was never published."""
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return self._timed(lambda: experiment_report(self._client(), self._keys, name))
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"experiment counters unavailable: {exc!r}") from exc

    def _script_arguments(self, events: list[tuple[Event, Attribution]], idempotency_key: str | None):
        keys = [self._keys.events_stream, self._keys.idempotency(idempotency_key or NO_IDEMPOTENCY)]
        index: dict[str, int] = {}

        def key_number(key: str) -> int:
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        encoded = []
        for event, attribution in events:
            entry = {"f": [part for pair in stream_fields(event, attribution).items() for part in pair], "c": 0, "x": 0}
            if attribution.counted:
                name, salt, variant = attribution.experiment, attribution.salt, attribution.variant
                counts = self._keys.experiment_data(name, salt, "counts")
                entry.update(c=key_number(counts), h=f"{variant}:{event.type}")
                if event.type == "impression":
                    exposed = self._keys.experiment_data(name, salt, "exposed", variant)
                    entry.update(x=key_number(exposed), u=event.user_id)
            encoded.append(entry)
        argv = [idempotency_key or "", self._idempotency_ttl, json.dumps(encoded, ensure_ascii=False)]
        return keys, argv

    def _timed(self, call: Callable[[], object]):
        """Run one Redis call, telling the observer how long it took and whether it failed."""
        started, failed = time.perf_counter(), True
        try:
            result = call()
            failed = False
            return result
        finally:
            if self._observe is not None:
                self._observe(time.perf_counter() - started, failed)

    def _client(self):
        if self._client_instance is None:
            self._client_instance = self._connect()
        return self._client_instance

    def close(self) -> None:
        """Close the Redis client."""
        if self._client_instance is not None:
            self._client_instance.close()
