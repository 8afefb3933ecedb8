"""One run as the API holds it in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from store.contract import DEFAULT_VARIANT
from store.experiments import Assignment

RankedTuple = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class RunSnapshot:
    """What a request needs of the current run, captured once and never changed: its meta,
    every popular list, each item's categories and each category's cold items."""

    run_id: str
    meta: dict
    popular: RankedTuple
    category_popular: dict[str, RankedTuple] = field(default_factory=dict)
    item_categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cold: dict[str, tuple[str, ...]] = field(default_factory=dict)
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
