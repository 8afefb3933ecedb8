"""What the store holds, read from its control keys: the current run, the registered runs and
each run's meta document. Read by the writer, the admin commands and the tests alike.

Also the current-run record kept next to the run folders (``<runs_root>/current-run.json``,
docs/run-folder.md): which run the last publish, rollback or restore made current, so that a
restore after Redis lost its data brings back that run, a rollback included.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from collections.abc import Callable
from urllib.parse import urlparse

from store.connection import redis_address
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


CURRENT_RECORD_NAME = "current-run.json"
CURRENT_RECORD_VERSION = 1
log = logging.getLogger("recs.registry")


def current_record_location(runs_root: str) -> str:
    """Where the current-run record of a runs root lives: ``<runs_root>/current-run.json``."""
    return f"{_absolute(runs_root)}/{CURRENT_RECORD_NAME}"


def run_date_of(run_id: str) -> str | None:
    """The logical date a run id starts with (finalize builds them so), or None."""
    try:
        return dt.date.fromisoformat(run_id[:10]).isoformat()
    except ValueError:
        return None


def run_folder_of(runs_root: str, run_id: str) -> str | None:
    """The run folder a run id was built in, ``<runs_root>/<run date>``, or None without a date."""
    run_date = run_date_of(run_id)
    return None if run_date is None else f"{_absolute(runs_root)}/{run_date}"


def record_current_run(runs_root: str, run_id: str, by: str, store: dict) -> str | None:
    """Record atomically that ``run_id`` became current through command ``by``; return where.
    A record that cannot be written is logged and None returned: the switch itself stands."""
    location = current_record_location(runs_root)
    document = {
        "record_version": CURRENT_RECORD_VERSION,
        "run_id": run_id,
        "run_folder": run_folder_of(runs_root, run_id),
        "switched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "by": by,
        "store": store,
    }
    try:
        _write_atomically(location, json.dumps(document, indent=2, sort_keys=True) + "\n")
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these too
        log.warning("run %s is current, but the record %s could not be written (%s); a restore would not know it",
                    run_id, location, exc)  # fmt: skip
        return None
    return location


def current_run_recorder(cfg, by: str) -> Callable[[str], None]:
    """What publish_run and rollback call when the pointer moves (``on_switch``): record the run
    in the runs root of the config, naming command ``by`` and the store (never its password)."""
    store = {"address": redis_address(cfg.store.url), "key_prefix": cfg.store.key_prefix}

    def record(run_id: str) -> None:
        record_current_run(cfg.paths.runs_root, run_id, by, store)

    return record


def read_current_record(runs_root: str) -> dict | None:
    """The current-run record of a runs root, or None when there is none; ValueError when unreadable."""
    location = current_record_location(runs_root)
    try:
        document = json.loads(_read(location))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"the current-run record {location} cannot be read: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("run_id"), str):
        raise ValueError(f"the current-run record {location} names no run_id")
    return document


def _absolute(path: str) -> str:
    path = str(path).rstrip("/")
    return path if urlparse(path).scheme else os.path.abspath(path)


def _remote(location: str):
    """pyarrow's file system and path for a URI (HDFS, S3, GCS), as the DAG's branch reads manifests."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(location.replace("s3a://", "s3://", 1).replace("s3n://", "s3://", 1))


def _write_atomically(location: str, text: str) -> None:
    if urlparse(location).scheme:
        filesystem, path = _remote(location)
        with filesystem.open_output_stream(f"{path}.tmp") as out:
            out.write(text.encode("utf-8"))
        filesystem.move(f"{path}.tmp", path)
        return
    folder = os.path.dirname(location)
    if not os.path.isdir(folder):
        raise OSError(f"the runs root {folder} does not exist")
    # Named after the record, never with a leading dot: stages list the runs root and sort names.
    prefix = f"{CURRENT_RECORD_NAME}."
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, prefix=prefix, suffix=".tmp") as out:
        out.write(text)
    try:
        os.replace(out.name, location)
    except OSError:
        os.unlink(out.name)
        raise


def _read(location: str) -> str:
    if not urlparse(location).scheme:
        with open(location, encoding="utf-8") as stream:
            return stream.read()
    filesystem, path = _remote(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")
