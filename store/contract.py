"""The Redis store contract, version 3: key layout, value encoding and id rules.

The writer (store.writer, driven by the publish job) and the reader (store.reader, inside the
API) both import this module, and nothing else decides what a key looks like.
docs/store-contract.md is the same contract in prose. Spark executors and the config loader
import it, so beyond the standard library it imports only orjson at the top; numpy and pyarrow
are imported inside the functions that need them.

Keys, for key prefix P (``recs`` by default), run id R, variant V and experiment X:

    {P}:current                  string   id of the current run (the pointer readers follow)
    {P}:runs                     zset     run ids known to the store, score 0, ordered by id
    {P}:lock:publish             string   publisher lock token (with a TTL)
    P:run:R:meta                 string   JSON run metadata (see RUN_META_FIELDS below)
    P:run:R:user:V:<user_id>     string   JSON user list: candidates, seen popular items, top categories
    P:run:R:popular:all          string   JSON popular list (unknown-user fallback)
    P:run:R:popular:category:<c> string   JSON popular list of one category
    P:run:R:similar:<item_id>    string   JSON item-to-item list and how it was made (als, content)
    P:run:R:item_categories      string   JSON {item_id: [category, ...]} of the run's catalogue
    P:run:R:cold                 string   JSON {category: [cold item_id, ...]} for exploration
    {P:events}:stream            stream   every accepted event
    {P:events}:trimmed_before    string   stream id below which entries were exported and trimmed
    {P:events}:exp:X:definition    string   JSON experiment definition as last published
    {P:events}:exp:X:G:counts      hash     "<V>:<event type>" -> count of counted events
    {P:events}:exp:X:G:assigned:V  hll      users who were served variant V (HyperLogLog)
    {P:events}:exp:X:G:exposed:V   set      users with an impression counted for variant V
    {P:events}:idem:<key>          string   an Idempotency-Key already applied (with a TTL)

G is the experiment's generation, ``salt_generation(salt)``: a new salt starts new counters.

The three control keys share the ``{P}`` hash tag, so on Redis Cluster they sit in one slot
and the pointer switch can be a single script. The event keys share ``{P:events}``, so an
event and its counters are written in one transaction. Per-run keys carry no hash tag and
spread over the cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from operator import itemgetter

import orjson

_first, _second = itemgetter(0), itemgetter(1)

CONTRACT_VERSION = 3
MAX_ID_LENGTH = 256
# The variant of a run without an experiment.
DEFAULT_VARIANT = "default"
EVENT_TYPES = ("impression", "click", "conversion")
SIMILAR_METHODS = ("als", "content")
# Experiment and variant names: they appear in keys, so no colons or braces.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# ASCII control characters: refused in ids by the API and quarantined by prepare.
# Written so that Python's re and Java's regex read it the same way.
ID_FORBIDDEN_CHARS = r"[\x00-\x1f\x7f]"
RUN_ID_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}$")
SCORE_DIGITS = 6

_FORBIDDEN = re.compile(ID_FORBIDDEN_CHARS)
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def normalize_id(value: str) -> str:
    """Ids are compared without leading and trailing spaces (prepare trims them the same way)."""
    return value.strip(" ")


def id_violation(value: str) -> str | None:
    """Which id rule a user, item or category id breaks, or None when it keeps them all."""
    if value == "":
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if _FORBIDDEN.search(value):
        return "must not contain control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


def check_run_id(run_id: str) -> str:
    """Return run_id if it has the shape run ids must have, else raise ValueError."""
    if not RUN_ID_PATTERN.fullmatch(run_id or ""):
        raise ValueError(f"invalid run id {run_id!r}: letters, digits, '_', '.', '-' only, at most 64")
    return run_id


def glob_escape(text: str) -> str:
    """Escape text for use inside a Redis SCAN MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def check_name(name: str) -> str:
    """Return an experiment or variant name if it can appear in keys, else raise ValueError."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(f"invalid name {name!r}: letters, digits, '_' or '-', at most 32")
    return name


def salt_generation(salt: str) -> str:
    """A short name for an experiment's salt in its counter keys: 8 hex digits of its SHA-256."""
    return hashlib.sha256(salt.encode("utf-8")).hexdigest()[:8]


def check_key_prefix(prefix: str) -> str:
    """Return prefix if it can start keys (not empty, no braces or colons), else raise ValueError."""
    if not prefix or "{" in prefix or "}" in prefix or ":" in prefix:
        raise ValueError(f"invalid key prefix {prefix!r}: it must be non-empty, with no braces or colons")
    return prefix


class KeyLayout:
    """Builds every key of one key prefix; the only place key strings are spelt out."""

    def __init__(self, prefix: str = "recs"):
        self.prefix = check_key_prefix(prefix)

    @property
    def current(self) -> str:
        return f"{{{self.prefix}}}:current"

    @property
    def runs(self) -> str:
        return f"{{{self.prefix}}}:runs"

    @property
    def publish_lock(self) -> str:
        return f"{{{self.prefix}}}:lock:publish"

    def run_namespace(self, run_id: str) -> str:
        """Common prefix of all of one run's keys."""
        return f"{self.prefix}:run:{check_run_id(run_id)}"

    def meta(self, run_id: str) -> str:
        return f"{self.run_namespace(run_id)}:meta"

    def user_recs(self, run_id: str, variant: str, user_id: str) -> str:
        return f"{self.run_namespace(run_id)}:user:{check_name(variant)}:{user_id}"

    def popular(self, run_id: str, category: str | None = None) -> str:
        if category is None:
            return f"{self.run_namespace(run_id)}:popular:all"
        return f"{self.run_namespace(run_id)}:popular:category:{category}"

    def run_pattern(self, run_id: str) -> str:
        """SCAN pattern matching every key of one run."""
        return glob_escape(self.run_namespace(run_id)) + ":*"

    def user_pattern(self, run_id: str) -> str:
        """SCAN pattern matching the per-user keys of one run, every variant."""
        return glob_escape(self.run_namespace(run_id)) + ":user:*"

    def similar(self, run_id: str, item_id: str) -> str:
        return f"{self.run_namespace(run_id)}:similar:{item_id}"

    def similar_pattern(self, run_id: str) -> str:
        """SCAN pattern matching the item-to-item keys of one run."""
        return glob_escape(self.run_namespace(run_id)) + ":similar:*"

    def item_categories(self, run_id: str) -> str:
        return f"{self.run_namespace(run_id)}:item_categories"

    def cold(self, run_id: str) -> str:
        return f"{self.run_namespace(run_id)}:cold"

    @property
    def events_stream(self) -> str:
        return f"{{{self.prefix}:events}}:stream"

    @property
    def events_trimmed_before(self) -> str:
        return f"{{{self.prefix}:events}}:trimmed_before"

    def experiment_definition(self, name: str) -> str:
        return f"{{{self.prefix}:events}}:exp:{check_name(name)}:definition"

    def experiment_data(self, name: str, salt: str, part: str, variant: str | None = None) -> str:
        """An experiment generation's counters: ``counts``, and per variant ``assigned`` and ``exposed``."""
        key = f"{{{self.prefix}:events}}:exp:{check_name(name)}:{salt_generation(salt)}:{part}"
        return key if variant is None else f"{key}:{check_name(variant)}"

    def idempotency(self, token: str) -> str:
        return f"{{{self.prefix}:events}}:idem:{token}"


def _json(value) -> bytes:
    """Compact UTF-8 JSON. orjson rather than json: several times faster on the publish and
    lookup paths; readers see the same values (only number spelling such as 1e-5 may differ)."""
    return orjson.dumps(value)


def _parsed(raw: bytes | str):
    """Parse JSON; ValueError (orjson.JSONDecodeError is one) on anything that is not."""
    return orjson.loads(raw)


def _pairs(items: Iterable[tuple[str, float]]) -> list[list]:
    pairs = [[str(item_id), float(f"{float(score):.{SCORE_DIGITS}g}")] for item_id, score in items]
    if not all(math.isfinite(score) for _, score in pairs):
        raise ValueError("a ranked list's scores must be finite numbers")
    return pairs


def rounded_scores(scores: Sequence[float]) -> list[float]:
    """Scores at SCORE_DIGITS significant digits, as the encoders store them, for a whole column
    at once: the publish job's vectorised form of the per-score rounding in encode_items (the two
    can differ in the last digit only for a score that sits on a rounding tie)."""
    return rounded_score_array(scores).tolist()


def rounded_score_array(scores):
    """rounded_scores as a float64 numpy array."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(values).all():
        # A null score reaches here as NaN: stored as JSON null, no reader could serve the list.
        raise ValueError("a ranked list's scores must be finite numbers")
    magnitude = np.abs(values)
    # Below 1e-290 the power of ten would overflow; such scores are stored as they are.
    measurable = magnitude >= 1e-290
    shift = SCORE_DIGITS - 1 - np.floor(np.log10(np.where(measurable, magnitude, 1.0)))
    # Divide by an exact power of ten rather than multiply by an inexact inverse, so that the
    # result is the double nearest to the rounded decimal and prints as that decimal.
    scale = 10.0 ** np.abs(shift)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.where(shift >= 0, np.round(values * scale) / scale, np.round(values / scale) * scale)
    return np.where(measurable, rounded, values)


def ranked_pairs(item_ids: Sequence[str], scores: Sequence[float], offsets: Sequence[int]) -> list[list[tuple]]:
    """Ranked lists in stored form, from a column of lists given flat (ids and scores, best first
    within each list) with list boundaries ``offsets`` (n + 1 of them, as Arrow keeps them)."""
    # Tuples, which zip makes in C (orjson writes them as JSON arrays, as it does lists).
    pairs = list(zip(item_ids, rounded_scores(scores), strict=True))
    return [pairs[start:end] for start, end in zip(offsets[:-1], offsets[1:], strict=True)]


def encode_items(items: Iterable[tuple[str, float]]) -> bytes:
    """Encode a ranked list as compact JSON: [[item_id, score], ...], best first."""
    return _json(_pairs(items))


def decode_items(raw: bytes | str) -> list[tuple[str, float]]:
    """Decode a ranked list written by encode_items; raises ValueError on anything else."""
    return _ranked(_parsed(raw))


def _ranked(value) -> list[tuple[str, float]]:
    """A parsed [[item_id, score], ...] as (item_id, score) tuples; ValueError on anything else."""
    # Checked with map() and sets rather than a Python loop: this runs on every lookup, over
    # every stored candidate. type() rather than isinstance(), so that true/false are no scores.
    if type(value) is not list or not set(map(type, value)) <= {list} or not set(map(len, value)) <= {2}:
        raise ValueError("ranked list is not [[item_id, score], ...]")
    score_types = set(map(type, map(_second, value)))
    if not set(map(type, map(_first, value))) <= {str} or not score_types <= {float, int}:
        raise ValueError("ranked list is not [[item_id, score], ...]")
    if int in score_types:
        return [(item_id, float(score)) for item_id, score in value]
    return list(map(tuple, value))


def encode_user_list(items: Iterable[tuple[str, float]], seen: Iterable[str], categories: Iterable[str]) -> bytes:
    """Encode a user's list: ``{"items": [[item_id, score], ...], "seen": [...], "categories": [...]}``,
    items best first; seen are the popular-list items the user has seen, categories their strongest."""
    return encode_user_pairs(_pairs(items), seen, categories)


def encode_user_pairs(pairs: Sequence[Sequence], seen: Iterable[str], categories: Iterable[str]) -> bytes:
    """encode_user_list for items already in stored form (one list of ranked_pairs)."""
    return _json({"items": pairs, "seen": list(seen), "categories": list(categories)})


def decode_user_list(
    raw: bytes | str, first: int | None = None
) -> tuple[list[tuple[str, float]], list[str], list[str]]:
    """Decode a user's list written by encode_user_list: (items, seen, categories); with
    ``first``, only the list's first that many items are checked and returned."""
    document = _parsed(raw)
    if type(document) is not dict or not {"items", "seen", "categories"} <= document.keys():
        raise ValueError("user list is not {items, seen, categories}")
    items = document["items"]
    if first is not None and type(items) is list:
        items = items[:first]
    return _ranked(items), _strings(document["seen"]), _strings(document["categories"])


def encode_similar(method: str, items: Iterable[tuple[str, float]]) -> bytes:
    """Encode an item-to-item list: ``{"method": "als" | "content", "items": [[item_id, score], ...]}``."""
    return encode_similar_pairs(method, _pairs(items))


def encode_similar_pairs(method: str, pairs: Sequence[Sequence]) -> bytes:
    """encode_similar for items already in stored form (one list of ranked_pairs)."""
    return _json({"method": method, "items": pairs})


def decode_similar(raw: bytes | str) -> tuple[str, list[tuple[str, float]]]:
    """Decode an item-to-item list written by encode_similar: (method, items)."""
    document = _parsed(raw)
    if type(document) is not dict or document.get("method") not in SIMILAR_METHODS:
        raise ValueError("item-to-item list is not {method, items}")
    return document["method"], _ranked(document["items"])


# Columnar encoders: the publish job's form of encode_user_pairs and encode_similar_pairs, for
# a whole Arrow batch at once. They give the same bytes (tests/test_store_columnar.py holds
# them to it): JSON text is assembled with Arrow string kernels, and whatever they could spell
# differently from orjson goes through orjson instead (a string that JSON must escape sends the
# whole batch to the row-by-row encoders; a score outside the range where Arrow and orjson
# print numbers alike is printed by orjson on its own).
_PLAIN_SCORE_RANGE = (1e-4, 1e9)


def user_list_columns(keys: KeyLayout, run_id: str, variant, user_id, items, seen, categories, id_field: str):
    """Keys and values (two Arrow arrays) of user lists given as Arrow columns: variant and
    user_id strings, items a list of struct<``id_field``, score> (best first), seen and
    categories lists of strings; the same bytes as user_list_writes(..., stored_form=True)."""
    import pyarrow as pa

    prefixes = {name: keys.user_recs(run_id, name, "") for name in _unique(variant)}
    key_column = _joined(_by_value(variant, prefixes), user_id)
    texts = (_ranked_json(items, id_field), _string_list_json(seen), _string_list_json(categories))
    if any(text is None for text in texts):
        ranked = ranked_pairs_column(items, id_field)
        rows = zip(ranked, seen.to_pylist(), categories.to_pylist(), strict=True)
        return key_column, pa.array([encode_user_pairs(pairs, s, c) for pairs, s, c in rows], pa.binary())
    ranked, seen_text, category_text = texts
    value = _joined('{"items":', ranked, ',"seen":', seen_text, ',"categories":', category_text, "}")
    return key_column, value.cast(pa.binary())


def similar_list_columns(keys: KeyLayout, run_id: str, item_id, method, items, id_field: str):
    """Keys and values of item-to-item lists given as Arrow columns (item_id, method, items a
    list of struct<``id_field``, score>); the same bytes as similar_list_writes(..., stored_form=True)."""
    import pyarrow as pa

    for name in _unique(method):
        if name not in SIMILAR_METHODS:
            raise ValueError(f"unknown item-to-item method {name!r}")
    key_column = _joined(keys.similar(run_id, ""), item_id)
    ranked = _ranked_json(items, id_field)
    if ranked is None:
        pairs = ranked_pairs_column(items, id_field)
        values = [encode_similar_pairs(name, listed) for name, listed in zip(method.to_pylist(), pairs, strict=True)]
        return key_column, pa.array(values, pa.binary())
    return key_column, _joined('{"method":"', method, '","items":', ranked, "}").cast(pa.binary())


def ranked_pairs_column(items, id_field: str) -> list[list[tuple]]:
    """An Arrow list-of-struct<``id_field``, score> column as ranked_pairs lists (stored form)."""
    import pyarrow.compute as pc

    entries = pc.list_flatten(items)
    offsets = _list_offsets(items)
    scores = entries.field("score").to_numpy(zero_copy_only=False)
    return ranked_pairs(entries.field(id_field).to_pylist(), scores, offsets.tolist())


def _ranked_json(items, id_field: str):
    """Each list of items as JSON text [["id",score],...], or None when an id needs escaping."""
    import pyarrow.compute as pc

    if items.null_count:
        return None
    entries = pc.list_flatten(items)
    ids = entries.field(id_field)
    if _needs_escaping(ids):
        return None
    scores = _score_texts(entries.field("score").to_numpy(zero_copy_only=False))
    return _json_lists(_list_offsets(items), _joined('["', ids, '",', scores, "]"))


def _string_list_json(lists):
    """Each list of strings as JSON text ["a","b"], or None when one needs escaping."""
    import pyarrow.compute as pc

    if lists.null_count:
        return None
    values = pc.list_flatten(lists)
    if _needs_escaping(values):
        return None
    return _json_lists(_list_offsets(lists), _joined('"', values, '"'))


def _needs_escaping(strings) -> bool:
    """Whether a string column has nulls, or a byte JSON writes escaped: '"', '\\' or a control
    character (checked on the column's bytes at once)."""
    import numpy as np
    import pyarrow as pa

    if strings.null_count:
        return True
    _, offset_buffer, data = strings.buffers()
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    offsets = np.frombuffer(offset_buffer, dtype=width)[strings.offset : strings.offset + len(strings) + 1]
    text = np.frombuffer(data or b"", dtype=np.uint8)[offsets[0] : offsets[-1]]
    return bool(((text < 0x20) | (text == 0x22) | (text == 0x5C)).any())


def _json_lists(offsets, elements):
    """JSON arrays of already-encoded ``elements``, cut into lists at ``offsets``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), elements)
    return _joined("[", pc.binary_join(lists, ","), "]")


def _score_texts(scores):
    """Scores rounded as the row encoders round them, printed as orjson prints them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rounded = rounded_score_array(scores)
    texts = pc.cast(pa.array(rounded, pa.float64()), pa.string())
    magnitude = np.abs(rounded)
    low, high = _PLAIN_SCORE_RANGE
    # Arrow prints whole numbers without ".0" and switches to exponents at other magnitudes.
    apart = (magnitude < low) | (magnitude >= high) | (rounded == np.trunc(rounded))
    if not apart.any():
        return texts
    printed = pa.array([orjson.dumps(score).decode("ascii") for score in rounded[apart].tolist()], pa.string())
    return pc.replace_with_mask(texts, pa.array(apart), printed)


def _list_offsets(lists):
    """A list column's offsets from 0 (a sliced column's do not start there)."""
    offsets = lists.offsets.to_numpy()
    return offsets - offsets[0]


def _joined(*parts):
    """Element-wise concatenation of string columns and constants."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, "")


def _unique(column) -> list[str]:
    import pyarrow.compute as pc

    return pc.unique(column).to_pylist()


def _by_value(column, mapping: dict[str, str]):
    """Each string of ``column`` replaced by its value in ``mapping`` (which covers them all)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(mapping)
    return pc.take(pa.array([mapping[name] for name in names], pa.string()), pc.index_in(column, pa.array(names)))


def encode_mapping(mapping: dict[str, list[str]]) -> bytes:
    """Encode a mapping of ids to id lists (item categories, cold items per category) as JSON."""
    return orjson.dumps(mapping, option=orjson.OPT_SORT_KEYS)


def decode_mapping(raw: bytes | str) -> dict[str, tuple[str, ...]]:
    """Decode a mapping written by encode_mapping."""
    document = _parsed(raw)
    if not isinstance(document, dict):
        raise ValueError("mapping is not a JSON object")
    return {str(key): tuple(_strings(values)) for key, values in document.items()}


def _strings(values) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise ValueError("expected a list of strings")
    return values


# Fields every run's meta document carries; publishers may add more. ``variants`` lists the
# variants with per-user lists; ``experiment`` is the experiment they belong to, or null.
# Version 1 metas lack those two; they read as one default variant and no experiment.
V1_DEFAULTS = {"variants": [DEFAULT_VARIANT], "experiment": None}


def run_is_readable(meta: dict) -> bool:
    """Whether this code can serve a run: it was published under this contract version."""
    return meta.get("contract_version") == CONTRACT_VERSION


RUN_META_FIELDS = (
    "contract_version",
    "run_id",
    "run_date",
    "published_at",
    "status",
    "counts",
    "metrics",
    "categories",
    "variants",
    "experiment",
)


def encode_meta(meta: dict) -> bytes:
    """Encode a run meta document as JSON."""
    missing = [field for field in RUN_META_FIELDS if field not in meta]
    if missing:
        raise ValueError(f"run meta lacks {missing}")
    return json.dumps(meta, separators=(",", ":"), sort_keys=True).encode("utf-8")


def decode_meta(raw: bytes | str) -> dict:
    """Decode a run meta document of any contract version (a version 1 one with the fields it
    lacks filled in, so retention and rollback still see it); raises ValueError when it is not one."""
    meta = json.loads(raw)
    if isinstance(meta, dict) and meta.get("contract_version") == 1:
        meta = {**V1_DEFAULTS, **meta}
    if not isinstance(meta, dict) or any(field not in meta for field in RUN_META_FIELDS):
        raise ValueError("run meta is not a contract document")
    return meta


def newest_first(run_ids: Sequence[str]) -> list[str]:
    """Order run ids newest first; run ids sort by their text (date, then finish time)."""
    return sorted(run_ids, reverse=True)
