"""The columnar encoders and the columnar bulk load (the publish job's path) against the row
encoders and set_many they stand for: the same keys, byte for byte the same values, into a real
redis-server."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pytest
import redis

from store.bulk import packed_set, packed_set_column, set_columns
from store.contract import (
    KeyLayout,
    decode_user_list,
    ranked_pairs_column,
    similar_list_columns,
    user_list_columns,
)
from store.writer import similar_list_writes, user_list_writes

KEYS = KeyLayout("recs")
RUN_ID = "2026-11-30_20261130T020000000Z"
ITEM = pa.struct([("item_id", pa.string()), ("score", pa.float64())])
SIMILAR = pa.struct([("similar_item_id", pa.string()), ("score", pa.float64())])


def random_scores(rng, count: int) -> np.ndarray:
    """Scores over every range the two printers treat differently: ALS-like values, whole
    numbers, tiny and huge magnitudes, negatives and zeros."""
    kinds = rng.integers(0, 5, count)
    scores = rng.random(count) * 1.5
    scores[kinds == 1] = np.round(rng.normal(0, 500, (kinds == 1).sum()))
    scores[kinds == 2] = rng.normal(0, 1, (kinds == 2).sum()) * 10.0 ** rng.integers(-12, -3, (kinds == 2).sum())
    scores[kinds == 3] = rng.normal(0, 1, (kinds == 3).sum()) * 10.0 ** rng.integers(8, 18, (kinds == 3).sum())
    scores[kinds == 4] = -scores[kinds == 4]
    scores[::97] = 0.0
    return scores


def list_column(rng, rows: int, longest: int, ids: list[str], struct=ITEM) -> pa.ListArray:
    lengths = rng.integers(0, longest + 1, rows)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    entries = pa.StructArray.from_arrays(
        [pa.array([ids[i] for i in rng.integers(0, len(ids), offsets[-1])]), pa.array(random_scores(rng, offsets[-1]))],
        fields=list(struct),
    )
    return pa.ListArray.from_arrays(pa.array(offsets), entries)


def string_lists(rng, rows: int, values: list[str]) -> pa.ListArray:
    return pa.array([[values[i] for i in rng.integers(0, len(values), rng.integers(0, 4))] for _ in range(rows)],
                    pa.list_(pa.string()))  # fmt: skip


def user_batch(seed: int, rows: int = 300, extra_ids: tuple[str, ...] = ()) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    ids = [f"item_{i:05d}" for i in range(400)] + ["film ü 映画", *extra_ids]
    return pa.RecordBatch.from_arrays(
        [pa.array(rng.choice(["default", "als_rank64"], rows)), pa.array([f"user {u}·é" for u in range(rows)]),
         list_column(rng, rows, 30, ids), string_lists(rng, rows, ids), string_lists(rng, rows, ["Drama", "Sci-Fi"])],
        names=["variant", "user_id", "items", "seen", "top_categories"],
    )  # fmt: skip


def columnar_user_writes(batch: pa.RecordBatch) -> list[tuple[str, bytes]]:
    column = batch.column
    keys, values = user_list_columns(KEYS, RUN_ID, column("variant"), column("user_id"), column("items"),
                                     column("seen"), column("top_categories"), "item_id")  # fmt: skip
    return list(zip(keys.to_pylist(), values.to_pylist(), strict=True))


def row_user_writes(batch: pa.RecordBatch) -> list[tuple[str, bytes]]:
    column = batch.column
    ranked = ranked_pairs_column(column("items"), "item_id")
    rows = zip(column("variant").to_pylist(), column("user_id").to_pylist(), ranked, column("seen").to_pylist(),
               column("top_categories").to_pylist(), strict=True)  # fmt: skip
    return list(user_list_writes(rows, KEYS, RUN_ID, stored_form=True))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("part", ["whole", "sliced"])
def test_user_lists_encode_to_the_same_bytes_as_the_row_encoder(seed, part):
    batch = user_batch(seed)
    batch = batch if part == "whole" else batch.slice(37, 180)
    columnar = columnar_user_writes(batch)
    assert columnar == row_user_writes(batch)
    assert {key.split(":")[4] for key, _ in columnar} == {"default", "als_rank64"}
    assert any(value.startswith(b'{"items":[],') for _, value in columnar), "empty lists are covered"


@pytest.mark.parametrize("odd_id", ['a "quoted" film', "back\\slash", "tab\there"])
def test_a_batch_with_a_string_json_must_escape_gives_the_same_bytes(odd_id):
    batch = user_batch(11, extra_ids=(odd_id,))
    columnar = columnar_user_writes(batch)
    assert columnar == row_user_writes(batch)
    assert any(orjson.dumps(odd_id) in value for _, value in columnar)


def test_similar_lists_encode_to_the_same_bytes_as_the_row_encoder():
    rng = np.random.default_rng(5)
    items = list_column(rng, 200, 20, [f"item_{i}" for i in range(300)], SIMILAR)
    item_ids, methods = pa.array([f"item_{i}" for i in range(200)]), pa.array(rng.choice(["als", "content"], 200))
    keys, values = similar_list_columns(KEYS, RUN_ID, item_ids, methods, items, "similar_item_id")
    rows = zip(item_ids.to_pylist(), methods.to_pylist(), ranked_pairs_column(items, "similar_item_id"), strict=True)
    assert list(zip(keys.to_pylist(), values.to_pylist(), strict=True)) == list(
        similar_list_writes(rows, KEYS, RUN_ID, stored_form=True)
    )


def test_scores_print_as_orjson_prints_them_across_magnitudes():
    scores = random_scores(np.random.default_rng(9), 200_000)
    ids = pa.array(["x"] * len(scores))
    items = pa.ListArray.from_arrays(pa.array([0, len(scores)], pa.int32()), pa.StructArray.from_arrays(
        [ids, pa.array(scores)], fields=list(ITEM)))  # fmt: skip
    empty = pa.array([[]], pa.list_(pa.string()))
    _, values = user_list_columns(KEYS, RUN_ID, pa.array(["default"]), pa.array(["u"]), items, empty, empty, "item_id")
    ranked = ranked_pairs_column(items, "item_id")[0]
    assert values[0].as_py() == orjson.dumps({"items": ranked, "seen": [], "categories": []})
    assert decode_user_list(values[0].as_py())[0] == ranked


def test_a_non_finite_score_or_a_bad_variant_is_refused():
    batch = user_batch(3, rows=5)
    items = batch.column("items")
    entries = items.values
    scores = entries.field("score").to_numpy().copy()
    scores[0] = np.nan
    broken = pa.ListArray.from_arrays(items.offsets, pa.StructArray.from_arrays(
        [entries.field("item_id"), pa.array(scores)], fields=list(ITEM)))  # fmt: skip
    column = batch.column
    with pytest.raises(ValueError, match="finite"):
        user_list_columns(KEYS, RUN_ID, column("variant"), column("user_id"), broken, column("seen"),
                          column("top_categories"), "item_id")  # fmt: skip
    with pytest.raises(ValueError, match="invalid name"):
        user_list_columns(KEYS, RUN_ID, pa.array(["no:colons"] * 5), column("user_id"), items, column("seen"),
                          column("top_categories"), "item_id")  # fmt: skip


def test_packed_commands_are_the_row_packer_s():
    writes = columnar_user_writes(user_batch(2, rows=50))
    keys, values = pa.array([key for key, _ in writes]), pa.array([value for _, value in writes], pa.binary())
    assert packed_set_column(keys, values).to_pylist() == [packed_set(write) for write in writes]


def test_set_columns_writes_every_key_in_batches(redis_server, redis_client):
    batch = user_batch(4, rows=101).slice(1, 100)
    writes = columnar_user_writes(batch)
    keys, values = pa.array([key for key, _ in writes]), pa.array([value for _, value in writes], pa.binary())
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert set_columns(client, keys, values, batch_size=7) == 100
        assert set_columns(client, keys.slice(0, 0), values.slice(0, 0), batch_size=7) == 0
    finally:
        client.close()
    assert redis_client.dbsize() == 100
    assert all(redis_client.get(key) == value for key, value in writes)


def test_batches_larger_than_the_socket_buffers_are_written_whole(redis_server, redis_client):
    # 4 MB per batch, more than a socket's buffers hold: sent in pieces, every key arrives.
    keys = pa.array([f"big:{i}" for i in range(3_000)])
    values = pa.array([f"{i:06d}".encode() * 700 for i in range(3_000)], pa.binary())
    client = redis.Redis.from_url(redis_server.url, socket_timeout=30)
    try:
        assert set_columns(client, keys, values, batch_size=1_000) == 3_000
    finally:
        client.close()
    assert redis_client.dbsize() == 3_000
    assert redis_client.get("big:2999") == b"002999" * 700 and redis_client.get("big:0") == b"000000" * 700


def test_a_null_key_or_value_is_refused_before_anything_is_sent(redis_server, redis_client):
    client = redis.Redis.from_url(redis_server.url)
    try:
        with pytest.raises(ValueError, match="null"):
            set_columns(client, pa.array(["a", None]), pa.array([b"1", b"2"], pa.binary()), batch_size=10)
        with pytest.raises(ValueError, match="null"):
            set_columns(client, pa.array(["a", "b"]), pa.array([b"1", None], pa.binary()), batch_size=10)
    finally:
        client.close()
    assert redis_client.dbsize() == 0


def test_set_columns_raises_an_error_reply_after_reading_its_batch(redis_server, redis_client):
    writes = columnar_user_writes(user_batch(8, rows=40))
    keys, values = pa.array([key for key, _ in writes]), pa.array([value for _, value in writes], pa.binary())
    client = redis.Redis.from_url(redis_server.url)
    redis_client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            set_columns(client, keys, values, batch_size=10)
    finally:
        redis_client.config_set("maxmemory", 0)
    # The connection went back to the pool disconnected, so no stale reply is read next.
    assert client.ping() and client.get("absent") is None
    client.close()


def test_a_user_list_decoded_in_part_checks_and_returns_only_that_part():
    stored = orjson.dumps({"items": [["a", 0.9], ["b", 0.8], ["c", "not a score"]], "seen": ["s"], "categories": []})
    assert decode_user_list(stored, 2) == ([("a", 0.9), ("b", 0.8)], ["s"], [])
    with pytest.raises(ValueError, match="ranked list"):
        decode_user_list(stored, 3)
    with pytest.raises(ValueError, match="ranked list"):
        decode_user_list(stored)
