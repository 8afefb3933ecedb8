"""Assigning users to experiment variants: stable buckets, sticky bucket ranges, response ids.

    bucket_of("2026-12-ranking", "user_42")        # 0..9999, the same on every machine
    allocation = allocate({"als": 0.5, "popular": 0.5}, previous=None)
    Assignment(allocation).variant_for("2026-12-ranking", "user_42")

A user's bucket is the first 8 bytes of SHA-256 over the salt and the user id, modulo 10,000:
identical across processes, workers, restarts, machines and languages (docs/store-contract.md
spells it out for other readers). Variants own bucket ranges. When shares change, ``allocate``
starts from the previous allocation: a variant that shrinks gives up its highest buckets, a
variant that grows takes the lowest free ones, and every other bucket keeps its owner, so only
the users who must move do. The publisher computes the allocation (it knows the one being
served) and publishes it inside the run's meta; the API only reads it.

Standard library only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from store.contract import DEFAULT_VARIANT, RUN_ID_PATTERN, check_name

BUCKETS = 10_000
# variant -> sorted, disjoint [start, end) bucket ranges
Allocation = dict[str, list[list[int]]]
REC_ID_SEPARATOR = "~"
NO_EXPERIMENT = "-"


def bucket_of(salt: str, user_id: str, buckets: int = BUCKETS) -> int:
    """The user's bucket for this salt: SHA-256 of ``salt``, a NUL byte and the user id (UTF-8),
    first 8 bytes read big-endian, modulo the bucket count."""
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + user_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def target_counts(shares: Mapping[str, float], buckets: int = BUCKETS) -> dict[str, int]:
    """Buckets per variant, in name order: shares times the bucket count, rounded by largest
    remainder (ties to the earlier name) so that they sum to the bucket count exactly."""
    exact = {name: shares[name] * buckets for name in sorted(shares)}
    counts = {name: int(value) for name, value in exact.items()}
    short = buckets - sum(counts.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), name))
    for name in by_remainder[:short]:
        counts[name] += 1
    return counts


def allocate(shares: Mapping[str, float], previous: Allocation | None, buckets: int = BUCKETS) -> Allocation:
    """Bucket ranges for these shares, moving as few buckets as possible from ``previous``.
    Without a previous allocation the ranges follow each other in variant name order."""
    targets = target_counts(shares, buckets)
    owner: list[str | None] = [None] * buckets
    for variant, ranges in (previous or {}).items():
        if variant in targets:
            for start, end in ranges:
                owner[max(start, 0) : min(end, buckets)] = [variant] * (min(end, buckets) - max(start, 0))
    for variant, target in targets.items():
        owned = [bucket for bucket, name in enumerate(owner) if name == variant]
        for bucket in owned[target:]:  # a shrinking variant keeps its lowest buckets
            owner[bucket] = None
    free = iter([bucket for bucket, name in enumerate(owner) if name is None])
    for variant, target in targets.items():
        for _ in range(target - owner.count(variant)):
            owner[next(free)] = variant
    return _ranges(owner)


def _ranges(owner: list[str | None]) -> Allocation:
    ranges: Allocation = {}
    for bucket, variant in enumerate(owner):
        spans = ranges.setdefault(variant, [])
        if spans and spans[-1][1] == bucket:
            spans[-1][1] = bucket + 1
        else:
            spans.append([bucket, bucket + 1])
    return ranges


class Assignment:
    """Which variant each bucket belongs to, for one published experiment."""

    def __init__(self, name: str, salt: str, allocation: Allocation, buckets: int = BUCKETS):
        self.name, self.salt, self.buckets = name, salt, buckets
        self._owner = [""] * buckets
        for variant, ranges in allocation.items():
            for start, end in ranges:
                self._owner[start:end] = [variant] * (end - start)
        if "" in self._owner:
            raise ValueError(f"experiment {name!r}: the allocation leaves buckets without a variant")
        self.variants = tuple(allocation)

    @classmethod
    def from_meta(cls, experiment: Mapping | None) -> Assignment | None:
        """The assignment a run's meta publishes (its ``experiment`` field), or None without one."""
        if not experiment:
            return None
        return cls(experiment["name"], experiment["salt"], experiment["allocation"], experiment["buckets"])

    def variant_for(self, user_id: str) -> str:
        """The variant this user is in."""
        return self._owner[bucket_of(self.salt, user_id, self.buckets)]


ASSIGNED, FORCED, FALLBACK = "a", "f", "b"
NONCE = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class RecId:
    """What a response id says: the run, experiment and variant of the list, and how the list
    was chosen: ``a`` the user's own variant, ``f`` a variant forced for QA, ``b`` the fallback
    served while Redis was down. Only ``a`` responses count in the statistics."""

    run_id: str
    experiment: str | None
    variant: str
    mode: str
    nonce: str

    def __str__(self) -> str:
        parts = (self.run_id, self.experiment or NO_EXPERIMENT, self.variant, self.mode, self.nonce)
        return REC_ID_SEPARATOR.join(parts)

    @property
    def forced(self) -> bool:
        return self.mode == FORCED

    @property
    def counted(self) -> bool:
        """Whether events about this response count for its experiment's variant."""
        return self.mode == ASSIGNED and self.experiment is not None

    @classmethod
    def new(cls, run_id: str, experiment: str | None, variant: str, mode: str = ASSIGNED) -> RecId:
        """A fresh id for one response."""
        return cls(run_id, experiment, variant, mode, secrets.token_hex(8))

    @classmethod
    def parse(cls, text: str) -> RecId:
        """Read a response id back; ValueError when it is not one."""
        parts = text.split(REC_ID_SEPARATOR)
        if (
            len(parts) != 5
            or not RUN_ID_PATTERN.fullmatch(parts[0])
            or parts[3] not in (ASSIGNED, FORCED, FALLBACK)
            or not NONCE.fullmatch(parts[4])
        ):
            raise ValueError("is not a rec_id this API issued")
        experiment = None if parts[1] == NO_EXPERIMENT else check_name(parts[1])
        return cls(parts[0], experiment, check_name(parts[2]), parts[3], parts[4])


def published_experiment(definition: Mapping | None, previous: Mapping | None) -> dict | None:
    """The ``experiment`` field of a run's meta: the run's experiment definition (from its
    manifest) with its bucket allocation, continuing ``previous`` (the current run's field) when
    it is the same experiment with the same salt."""
    if not definition:
        return None
    same = previous and previous.get("name") == definition["name"] and previous.get("salt") == definition["salt"]
    allocation = allocate(definition["shares"], previous["allocation"] if same else None)
    return {**definition, "buckets": BUCKETS, "allocation": allocation}


def variant_or_default(assignment: Assignment | None, user_id: str) -> str:
    """The user's variant, or the default variant of a run without an experiment."""
    return DEFAULT_VARIANT if assignment is None else assignment.variant_for(user_id)
