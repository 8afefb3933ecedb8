"""The last loaded run's meta and popular lists on local disk, as JSON, so that an API worker
which starts while Redis is down can still answer with ``source: fallback``.

The file names the store it came from (Redis address and key prefix, never the password) and
when it was written; a file from another store, or older than its maximum age, is ignored. The
reader never deletes it: when Redis restarts empty, the file is what a worker started then
answers from.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from store.contract import decode_items, decode_meta
from store.snapshot import RunSnapshot

log = logging.getLogger("recs.fallback")
FORMAT_VERSION = 2


class FallbackFile:
    """Reads and writes one store's fallback snapshot."""

    def __init__(
        self, path: str | os.PathLike, store: str, max_age_seconds: float, clock: Callable[[], float] = time.time
    ):
        self.path = Path(path)
        self.store = store
        self.max_age_seconds = max_age_seconds
        self._clock = clock

    def write(self, snapshot: RunSnapshot) -> None:
        """Replace the file atomically (several workers may write at once); failures are logged."""
        document = {
            "format": FORMAT_VERSION,
            "store": self.store,
            "written_at": self._clock(),
            "run_id": snapshot.run_id,
            "meta": snapshot.meta,
            "popular": [list(pair) for pair in snapshot.popular],
            "category_popular": {
                category: [list(pair) for pair in items] for category, items in snapshot.category_popular.items()
            },
        }
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as out:
                tmp = out.name
                json.dump(document, out)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not write the fallback file %s: %s", self.path, exc)
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    def read(self) -> RunSnapshot | None:
        """The stored snapshot, or None when there is none usable for this store."""
        try:
            document = json.loads(self.path.read_text("utf-8"))
            problem = self._problem(document)
            if problem:
                log.warning("ignoring fallback file %s: %s", self.path, problem)
                return None
            popular = tuple(decode_items(json.dumps(document["popular"])))
            categories = {
                str(category): tuple(decode_items(json.dumps(items)))
                for category, items in document["category_popular"].items()
            }
            meta = decode_meta(json.dumps(document["meta"]))
            return RunSnapshot(str(document["run_id"]), meta, popular, categories, from_fallback_file=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable fallback file %s: %s", self.path, exc)
            return None

    def remove(self) -> None:
        """Delete the file (for clean-up: a Redis that lost its current run keeps it in use)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove the fallback file %s: %s", self.path, exc)

    def _problem(self, document) -> str | None:
        if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
            return "not a fallback file of this version"
        if document.get("store") != self.store:
            return f"it belongs to store {document.get('store')!r}, not {self.store!r}"
        age = self._clock() - float(document.get("written_at", 0))
        if age > self.max_age_seconds:
            return f"it is {age:.0f}s old, more than {self.max_age_seconds:.0f}s"
        return None
