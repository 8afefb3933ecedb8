"""One run as the API holds it in memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunSnapshot:
    """What a request needs of the current run, captured once and never changed."""

    run_id: str
    meta: dict
    popular: tuple[tuple[str, float], ...]
    # True when read from the fallback file at start-up, not yet confirmed by Redis.
    from_fallback_file: bool = False
