"""One run as the API holds it in memory."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from store.contract import DEFAULT_VARIANT
from store.experiments import Assignment


@dataclass(frozen=True)
class RunSnapshot:
    """What a request needs of the current run, captured once and never changed."""

    run_id: str
    meta: dict
    popular: tuple[tuple[str, float], ...]
    # True when read from the fallback file at start-up, not yet confirmed by Redis.
    from_fallback_file: bool = False

    @cached_property
    def assignment(self) -> Assignment | None:
        """The run's experiment assignment (bucket ranges per variant), or None without one."""
        return Assignment.from_meta(self.meta.get("experiment"))

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants the run has per-user lists for."""
        return tuple(self.meta.get("variants") or (DEFAULT_VARIANT,))
