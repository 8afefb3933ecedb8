"""The publisher's size check: how much Redis memory a run will take, and whether Redis has it.

    footprint = RunFootprint(user_lists=user_list_keys(keys, run_id, totals), ...)
    budget = check_memory(client, run_id, footprint, margin=0.25, retained_runs=2, keep_runs=3)  # or PublishRefused
    ...load the run...
    report = budget.measured(client)      # estimate next to the measured used_memory delta

The estimate comes from totals a columnar aggregate can give without reading any list one by
one (how many lists, items and strings, and their bytes), turned into JSON bytes with the
contract's own encoder and into Redis bytes with a measured per-key overhead. Neither Spark nor
a Redis connection of its own: the caller hands over the totals and its client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from store.contract import DEFAULT_VARIANT, KeyLayout, encode_items, encode_mapping, encode_similar, encode_user_list
from store.errors import PublishRefused

log = logging.getLogger("recs.memory")

# What Redis 7.0 (jemalloc 5.3) spends on one string key beyond its key and value bytes, as
# KEY_OVERHEAD_BYTES + ALLOCATOR_ROUNDING x (key + value bytes). Measured on 40,000 user lists
# encoded by encode_user_list (1-100 items, 0-40 seen items, ids of 1-14 characters, scores of
# several magnitudes; 1,681 key+value bytes on average): a least-squares fit of MEMORY USAGE
# minus key+value bytes over 3,000 sampled keys gave 46 B + 0.10 x size (the 0.10 is jemalloc
# rounding each allocation up to its size class), and used_memory grew by 22 B per key more
# than the sum of MEMORY USAGE (the keyspace's hash table buckets, which MEMORY USAGE leaves
# out): 46 + 22 = 68. The same constants put lists of 5, 20, 50 and 100 items within 5% of
# their measured used_memory per key.
KEY_OVERHEAD_BYTES = 68
ALLOCATOR_ROUNDING = 0.10
# The width of a score when the caller cannot tell it: six significant digits below 1.
TYPICAL_SCORE_CHARS = len(repr(0.123457))
# Redis's own unit: maxmemory 100mb is 100 x 2**20 bytes.
MB = 2**20

# JSON punctuation per list, per (item, score) pair and per plain string, from the encoder itself.
_EMPTY_USER_LIST = len(encode_user_list([], [], []))
_EMPTY_SIMILAR_LIST = len(encode_similar("", []))
_PAIR_PUNCTUATION = len(encode_items([("", 0)] * 2)) - len(encode_items([("", 0)])) - len("0.0")
_STRING_PUNCTUATION = len(encode_user_list([], ["", ""], [])) - len(encode_user_list([], [""], []))
_EMPTY_RANKED_LIST = len(encode_items([]))
_MAPPING_ENTRY = len(encode_mapping({"": [], "a": []})) - len(encode_mapping({"": []})) - len("a")


@dataclass(frozen=True)
class ListTotals:
    """Totals over a set of ranked lists: how many lists, (id, score) pairs and plain strings
    (seen items, categories, methods), the UTF-8 bytes of their ids, scores' printed width and
    strings, and the bytes of what varies in each list's key."""

    lists: int
    pairs: int
    pair_id_bytes: int
    key_id_bytes: int
    score_chars: int | None = None
    strings: int = 0
    string_bytes: int = 0

    def json_bytes(self, empty_list: int) -> int:
        """The lists' encoded size, given one empty list's size."""
        score_chars = self.pairs * TYPICAL_SCORE_CHARS if self.score_chars is None else self.score_chars
        pairs = self.pairs * _PAIR_PUNCTUATION + self.pair_id_bytes + score_chars
        return self.lists * empty_list + pairs + self.strings * _STRING_PUNCTUATION + self.string_bytes


@dataclass(frozen=True)
class KeyGroup:
    """Some keys of a run: how many, and their key plus value bytes."""

    keys: int
    raw_bytes: int

    @property
    def redis_bytes(self) -> int:
        """What the keys take in Redis (used_memory), with the measured per-key overhead."""
        return round(self.keys * KEY_OVERHEAD_BYTES + self.raw_bytes * (1 + ALLOCATOR_ROUNDING))


def user_list_keys(keys: KeyLayout, run_id: str, totals: ListTotals) -> KeyGroup:
    """The user-list keys of a run; ``key_id_bytes`` counts each list's variant, ':' and user id."""
    fixed_key = len(keys.user_recs(run_id, DEFAULT_VARIANT, "")) - len(DEFAULT_VARIANT) - 1
    raw = totals.lists * fixed_key + totals.key_id_bytes + totals.json_bytes(_EMPTY_USER_LIST)
    return KeyGroup(totals.lists, raw)


def similar_list_keys(keys: KeyLayout, run_id: str, totals: ListTotals) -> KeyGroup:
    """The item-to-item keys of a run; ``key_id_bytes`` counts item ids, ``string_bytes`` the
    methods' names (one per list, already quoted in the empty list, so ``strings`` is 0)."""
    fixed_key = len(keys.similar(run_id, ""))
    raw = totals.lists * fixed_key + totals.key_id_bytes + totals.json_bytes(_EMPTY_SIMILAR_LIST)
    return KeyGroup(totals.lists, raw)


def document_keys(keys: KeyLayout, run_id: str, popular: ListTotals, mappings: Sequence[ListTotals]) -> KeyGroup:
    """The run's one-key documents: its popular lists (``key_id_bytes``: category names) and
    its mappings, item categories and cold items (``lists``: entries, ``key_id_bytes``: their
    names, ``strings``: their values). The meta document, a few kilobytes, is left to the margin."""
    popular_key = len(keys.popular(run_id, ""))
    raw = popular.lists * popular_key + popular.key_id_bytes + popular.json_bytes(_EMPTY_RANKED_LIST)
    for mapping in mappings:
        raw += len(keys.item_categories(run_id)) + len(encode_mapping({}))
        raw += mapping.key_id_bytes + mapping.json_bytes(_MAPPING_ENTRY)
    return KeyGroup(popular.lists + len(mappings), raw)


@dataclass(frozen=True)
class RunFootprint:
    """A run's estimated size in Redis: its user lists, item-to-item lists and single documents."""

    user_lists: KeyGroup
    similar_lists: KeyGroup = KeyGroup(0, 0)
    documents: KeyGroup = KeyGroup(0, 0)

    @property
    def redis_bytes(self) -> int:
        """The whole estimate in bytes of used_memory."""
        return sum(group.redis_bytes for group in (self.user_lists, self.similar_lists, self.documents))


@dataclass(frozen=True)
class NodeMemory:
    """One Redis node's INFO memory figures."""

    name: str
    used: int
    maxmemory: int


@dataclass(frozen=True)
class MemoryBudget:
    """A size check that passed: the estimate and the memory used before the load."""

    run_id: str
    estimated_bytes: int
    margin: float
    used_before: int
    maxmemory: int

    def measured(self, client) -> dict:
        """The estimate next to the used_memory growth since the check, for the publish report."""
        used_after = sum(node.used for node in node_memory(client))
        delta = used_after - self.used_before
        log.info("run %s took %.2f MB of Redis memory; the size check estimated %.2f MB", self.run_id, delta / MB,
                 self.estimated_bytes / MB)  # fmt: skip
        return {
            "estimated_bytes": self.estimated_bytes,
            "measured_bytes": delta,
            "estimate_error": round(self.estimated_bytes / delta - 1, 3) if delta > 0 else None,
            "used_before": self.used_before,
            "used_after": used_after,
            "maxmemory": self.maxmemory,
            "margin": self.margin,
        }


def node_memory(client) -> list[NodeMemory]:
    """used_memory and maxmemory of every node that takes a share of a run's keys: the server,
    or every primary of a Redis Cluster (INFO answers for one node only)."""
    primaries = client.get_primaries() if hasattr(client, "get_primaries") else None
    if primaries is None:
        info = client.info("memory")
        return [NodeMemory("redis", int(info["used_memory"]), int(info["maxmemory"]))]
    figures = []
    for node in primaries:
        info = client.info("memory", target_nodes=node)
        figures.append(NodeMemory(node.name, int(info["used_memory"]), int(info["maxmemory"])))
    return figures


def check_memory(
    client, run_id: str, footprint: RunFootprint, margin: float, retained_runs: int, keep_runs: int
) -> MemoryBudget | None:
    """Refuse the run when its estimate plus ``margin`` (a fraction of it) does not fit under
    maxmemory on some node; without maxmemory only log the estimate. None when this Redis user
    may not run INFO (the check is then skipped with a warning)."""
    from redis.exceptions import NoPermissionError

    estimate = footprint.redis_bytes
    try:
        nodes = node_memory(client)
    except NoPermissionError:
        log.warning("run %s needs about %.2f MB in Redis; not checked against maxmemory: this Redis user "
                    "may not run INFO", run_id, estimate / MB)  # fmt: skip
        return None
    # Per-run keys carry no hash tag: a cluster spreads them evenly over its primaries' slots.
    share = estimate * (1 + margin) / len(nodes)
    for node in nodes:
        if node.maxmemory and node.used + share > node.maxmemory:
            where = "Redis" if len(nodes) == 1 else f"Redis node {node.name} (its share {share / MB:.1f} MB)"
            needs = f"{estimate * (1 + margin) / MB:.1f} MB ({estimate / MB:.1f} MB estimated + publish.memory_margin"
            free = max(node.maxmemory - node.used, 0)
            raise PublishRefused(
                f"run {run_id} needs about {needs} {margin:.0%}), {where} has {free / MB:.1f} MB free under "
                f"maxmemory {node.maxmemory / MB:.1f} MB; {_what_to_do(retained_runs, keep_runs)}"
            )
    limit = sum(node.maxmemory for node in nodes) if all(node.maxmemory for node in nodes) else 0
    if not limit:
        log.info("run %s needs about %.2f MB in Redis; no maxmemory, so not checked", run_id, estimate / MB)
    return MemoryBudget(run_id, estimate, margin, sum(node.used for node in nodes), limit)


def _what_to_do(retained_runs: int, keep_runs: int) -> str:
    """The advice of a refusal: retained runs are only worth naming when there are some."""
    if not retained_runs:
        return "raise maxmemory"
    return (
        f"raise maxmemory, or keep fewer runs (publish.keep_runs {keep_runs}; Redis holds {retained_runs} now, "
        "the current one included)"
    )
