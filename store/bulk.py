"""Writing many keys fast: SET commands packed into one buffer per batch and sent on one
connection, replies read back after, the way ``redis-cli --pipe`` loads a file.

redis-py's pipeline builds a command object and packs each SET in Python, which costs more
than Redis takes to execute it; packing the protocol text with one format per key and one
join per batch takes a small fraction of that. A Redis Cluster client keeps redis-py's
pipeline, which routes every key to the node that owns its slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice


def set_many(client, writes: Iterable[tuple[str, bytes]], batch_size: int) -> int:
    """SET every (key, value) of ``writes``, ``batch_size`` per round trip; return keys written.
    Any error reply (out of memory, no permission) raises after its batch is read."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        return _pipelined(client, writes, batch_size)
    writes = iter(writes)
    batches = iter(lambda: list(islice(writes, batch_size)), [])
    return _send_batches(client, ((b"".join(map(packed_set, batch)), len(batch)) for batch in batches))


def set_columns(client, keys, values, batch_size: int) -> int:
    """set_many for keys and values given as two Arrow columns (strings or bytes): the protocol
    text of the whole column is assembled by Arrow and sent a batch at a time; return keys written."""
    from redis.cluster import RedisCluster

    if keys.null_count or values.null_count:
        # A null would pack to no command at all, and its reply would be waited for in vain.
        raise ValueError("a key or value to write is null")
    if isinstance(client, RedisCluster):
        return _pipelined(client, zip(keys.to_pylist(), values.to_pylist(), strict=True), batch_size)
    commands = packed_set_column(keys, values)
    # One buffer holds the commands back to back; each batch is a slice of it, sent as it is.
    offsets, data = _offsets_and_data(commands)
    bounds = [(start, min(start + batch_size, len(commands))) for start in range(0, len(commands), batch_size)]
    return _send_batches(client, ((data[offsets[start] : offsets[stop]], stop - start) for start, stop in bounds))


def _send_batches(client, batches: Iterable[tuple[bytes | memoryview, int]]) -> int:
    """Send each (protocol text, commands in it) on one connection and read its replies before
    the next; return the commands sent."""
    written = 0
    connection = client.connection_pool.get_connection()
    try:
        for payload, count in batches:
            connection.send_packed_command([payload], check_health=False)
            _read_replies(connection, count)
            written += count
    except BaseException:
        # Replies may be left unread on it: never hand this connection to anyone else.
        connection.disconnect()
        raise
    finally:
        client.connection_pool.release(connection)
    return written


def packed_set_column(keys, values):
    """packed_set of each (key, value) of two Arrow columns, as one binary column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys, values = keys.cast(pa.binary()), values.cast(pa.binary())
    key_lengths, value_lengths = (_decimal_lengths(column) for column in (keys, values))
    parts = (b"*3\r\n$3\r\nSET\r\n$", key_lengths, b"\r\n", keys, b"\r\n$", value_lengths, b"\r\n", values, b"\r\n")
    return pc.binary_join_element_wise(*parts, b"")


def _decimal_lengths(column):
    """Each value's length in bytes, as decimal text (binary)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.binary_length(column), pa.string()).cast(pa.binary())


def _offsets_and_data(column) -> tuple[list[int], memoryview]:
    """A binary column's value boundaries (n + 1) and its data buffer."""
    import numpy as np

    _, offset_buffer, data = column.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    return offsets.tolist(), memoryview(data)


def packed_set(write: tuple[str, bytes]) -> bytes:
    """One SET in the Redis protocol (RESP): an array of three bulk strings."""
    key = write[0].encode("utf-8")
    value = write[1]
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value)


def _read_replies(connection, count: int) -> None:
    """Read ``count`` replies; raise the first error reply once all of them are read."""
    from redis.exceptions import ResponseError

    first_error = None
    for _ in range(count):
        try:
            connection.read_response()
        except ResponseError as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


def _pipelined(client, writes: Iterable[tuple[str, bytes]], batch_size: int) -> int:
    written = 0
    pipe = client.pipeline(transaction=False)
    for key, value in writes:
        pipe.set(key, value)
        written += 1
        if len(pipe) >= batch_size:
            pipe.execute()
    pipe.execute()
    return written
