"""What the store holds, read from its control keys: the current run, the registered runs and
each run's meta document. Read by the writer, the admin commands and the tests alike."""

from __future__ import annotations

from store.contract import KeyLayout, decode_meta, newest_first


def text(value: bytes | str | None) -> str | None:
    """Redis replies as str (or None), whatever the client's decode setting."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def current_run(client, keys: KeyLayout) -> str | None:
    """The run id the pointer names, or None before the first publish."""
    return text(client.get(keys.current))


def known_runs(client, keys: KeyLayout) -> list[str]:
    """Every run id registered in the store, newest first."""
    return newest_first([text(run_id) for run_id in client.zrange(keys.runs, 0, -1)])


def read_run_meta(client, keys: KeyLayout, run_id: str) -> dict | None:
    """A run's meta document, or None when it has none (it never finished loading)."""
    raw = client.get(keys.meta(run_id))
    return None if raw is None else decode_meta(raw)


def complete_runs(client, keys: KeyLayout) -> list[str]:
    """Registered runs whose meta says they finished loading, newest first."""
    return [
        run_id
        for run_id in known_runs(client, keys)
        if (read_run_meta(client, keys, run_id) or {}).get("status") == "complete"
    ]


def count_user_keys(client, keys: KeyLayout, run_id: str) -> int:
    """How many per-user keys of a run exist in the store (SCAN over every node)."""
    return sum(1 for _ in client.scan_iter(match=keys.user_pattern(run_id), count=1000))
