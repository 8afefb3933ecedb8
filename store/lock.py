"""The single-publisher lock: one publish, rollback or seeding at a time per key prefix.

    with publish_lock(client, keys, ttl_seconds) as lock:
        ...                     # renewed every third of its TTL until the block ends

redis-py's ``Lock`` (SET NX with a TTL and a token). The TTL is short (``publish.
lock_ttl_seconds``, 30 s): a live publisher renews it from a background thread, and a killed
one stops renewing, so a rerun can start within the TTL. SIGTERM releases it at once. The
token names the holder (host, pid, start time), which ``python -m store.admin lock`` shows and
``lock --clear`` uses to remove a dead holder's lock. The pointer switch checks the lock's
token in the same script that moves the pointer, so a publisher that lost its lock can never
make its run current.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from store.contract import KeyLayout
from store.errors import PublishRefused

log = logging.getLogger("recs.lock")


def holder_token(now: dt.datetime) -> str:
    """A lock token that says who holds the lock: host, pid, UTC start time and a random part."""
    return f"{socket.gethostname()}|{os.getpid()}|{now.strftime('%Y-%m-%dT%H:%M:%SZ')}|{uuid.uuid4().hex}"


def parse_holder(token: str) -> dict:
    """The parts of a holder token; tokens of other shapes come back as they are."""
    parts = token.split("|")
    if len(parts) != 4 or not parts[1].isdigit():
        return {"token": token}
    return {"host": parts[0], "pid": int(parts[1]), "since": parts[2], "token": token}


def acquire_publish_lock(client, keys: KeyLayout, ttl_seconds: float):
    """Take the publish lock without waiting, or refuse: only one publisher at a time."""
    lock = client.lock(keys.publish_lock, timeout=ttl_seconds, blocking=False, thread_local=False)
    if not lock.acquire(blocking=False, token=holder_token(dt.datetime.now(dt.UTC))):
        remaining = client.pttl(keys.publish_lock)
        raise PublishRefused(
            f"another publisher holds {keys.publish_lock} (expires in {max(remaining, 0) / 1000:.0f}s)"
        )
    return lock


def release_publish_lock(lock) -> None:
    """Release the lock if this process still holds it."""
    from redis.exceptions import LockError

    try:
        lock.release()
    except LockError:
        log.warning("publish lock had already expired before release")


def renew_publish_lock(lock) -> None:
    """Reset the lock's TTL now, or refuse if another process holds it."""
    from redis.exceptions import LockError

    try:
        lock.reacquire()
    except LockError as exc:
        raise PublishRefused("the publish lock was lost; raise publish.lock_ttl_seconds") from exc


class Terminated(Exception):
    """SIGTERM arrived while the publish lock was held."""


@contextmanager
def _released_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread, so the lock is released on the way out
    (Airflow stops a task with SIGTERM); elsewhere leave signals alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _terminate(signum, frame):
        raise Terminated("SIGTERM during a publish: the lock is released and the run stays unpublished")

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class LockRenewer:
    """A background thread that renews a lock's TTL at a fixed interval until stopped.

    A failed renewal (Redis briefly unreachable) is retried at the next tick; only a lock
    that another process now holds counts as lost, and ends the renewals."""

    def __init__(self, lock, every_seconds: float):
        self._lock = lock
        self._every = every_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="recs-lock-renewer", daemon=True)
        self.lost = False

    def start(self) -> LockRenewer:
        """Start renewing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and wait for the thread."""
        self._stopping.set()
        self._thread.join()

    def _renew(self) -> None:
        from redis.exceptions import LockError, RedisError

        while not self._stopping.wait(self._every):
            try:
                self._lock.reacquire()
            except LockError:
                self.lost = True
                return
            except RedisError as exc:
                log.warning("could not renew the publish lock, retrying: %s", exc)


@contextmanager
def publish_lock(client, keys: KeyLayout, ttl_seconds: float) -> Iterator:
    """Hold the publish lock for the block, renewed every third of its TTL, then release it.

    Refuses at once if another publisher holds it, and refuses at the end of the block if the
    lock was lost on the way (another publisher may have taken over)."""
    lock = acquire_publish_lock(client, keys, ttl_seconds)
    renewer = LockRenewer(lock, ttl_seconds / 3).start()
    try:
        with _released_on_sigterm():
            yield lock
    finally:
        renewer.stop()
        release_publish_lock(lock)
    if renewer.lost:
        raise PublishRefused("the publish lock was lost during the load; another publisher may have taken over")
