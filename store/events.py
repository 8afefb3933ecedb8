"""Recording what users did with their lists: one Redis Stream of every accepted event, and the
experiment counters the statistics read, written together in one transaction.

    log = EventLog(client_factory, keys)
    log.record([(event, attribute(event, assignment)), ...])      # all or nothing

An event is attributed to an experiment variant by its ``rec_id`` (the response it is about),
else by the ``variant`` the client names, else by the user's assignment in the current
experiment. Events about a forced (QA) response are kept in the stream but not counted.

Durability is Redis's: the transaction is acknowledged once Redis has applied it, so a Redis
that keeps events must run with the append-only file (``appendfsync always`` loses nothing a
client was told was accepted; ``everysec`` can lose the last second). See the README.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from store.contract import KeyLayout
from store.errors import StoreUnavailable
from store.experiment_report import experiment_report
from store.experiments import Assignment, RecId


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
    """Which experiment variant an event counts for, if any."""

    experiment: str | None
    variant: str | None
    counted: bool


def attribute(event: Event, assignment: Assignment | None) -> Attribution:
    """The event's experiment variant: from its rec_id, else the variant it names, else the
    user's assignment; counted unless it is about a forced response or there is no experiment."""
    if event.rec_id is not None:
        rec = event.rec_id
        return Attribution(rec.experiment, rec.variant, rec.experiment is not None and not rec.forced)
    if assignment is None:
        return Attribution(None, event.variant, False)
    variant = event.variant or assignment.variant_for(event.user_id)
    return Attribution(assignment.name, variant, True)


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

    def __init__(self, client: Callable[[], object], keys: KeyLayout):
        self._client = client
        self._keys = keys

    def record(self, events: Iterable[tuple[Event, Attribution]]) -> int:
        """Write a batch in one MULTI/EXEC (all or none of it); return how many were written."""
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return self._record(events)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"events not recorded: {exc!r}") from exc

    def report(self, name: str) -> dict | None:
        """An experiment's statistics from the stored counters, or None if it was never published."""
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return experiment_report(self._client(), self._keys, name)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"experiment counters unavailable: {exc!r}") from exc

    def _record(self, events: Iterable[tuple[Event, Attribution]]) -> int:
        pipe = self._client().pipeline(transaction=True)
        written = 0
        for event, attribution in events:
            pipe.xadd(self._keys.events_stream, stream_fields(event, attribution))
            if attribution.counted:
                counts = self._keys.experiment(attribution.experiment, "counts")
                pipe.hincrby(counts, f"{attribution.variant}:{event.type}", 1)
                if event.type == "impression":
                    exposed = self._keys.experiment(attribution.experiment, "exposed", attribution.variant)
                    pipe.sadd(exposed, event.user_id)
            written += 1
        pipe.execute()
        return written


def stream_id_at(moment: dt.datetime) -> str:
    """The smallest stream id Redis gives an entry added at or after ``moment``."""
    return f"{int(moment.timestamp() * 1000)}-0"
