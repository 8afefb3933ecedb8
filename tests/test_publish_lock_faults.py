"""A publisher killed mid-load: its lock no longer blocks reruns for long, SIGTERM releases it
at once, the admin commands show and clear a dead holder's lock, and the rerun removes the
killed attempt's keys."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from store import admin, lock
from store.contract import KeyLayout
from store.errors import PublishRefused
from tools.processes import ROOT, project_env

KEYS = KeyLayout("recs")
RUN_ID = "2026-11-29_20261129T020000000Z"

# A publisher whose load writes a stray key, says so, then hangs: killed there, it leaves its
# lock and a half-loaded run behind.
PUBLISHER = textwrap.dedent(
    """
    import sys, time, redis
    from store.contract import KeyLayout
    from store.writer import PublishPolicy, publish_run
    client = redis.Redis.from_url(sys.argv[1])
    keys = KeyLayout("recs")
    def load(run_id):
        client.set(keys.user_recs(run_id, "default", "stray-user"), "{}")
        print("loading", flush=True)
        time.sleep(600)
    manifest = {"run_id": sys.argv[2], "run_date": sys.argv[2][:10], "metrics": {}, "variants": ["default"]}
    publish_run(client, keys, PublishPolicy(keep_runs=2, batch_size=10, lock_ttl_seconds=float(sys.argv[3])),
                manifest, load)
    """
)


def start_publisher(redis_url: str, ttl_seconds: float) -> subprocess.Popen:
    """A publisher process stopped inside its load."""
    process = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, redis_url, RUN_ID, str(ttl_seconds)],
        cwd=ROOT, env=project_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "loading"
    return process


def test_after_sigkill_the_lock_shows_a_dead_holder_and_a_rerun_starts_within_the_ttl(redis_server, redis_client):
    publisher = start_publisher(redis_server.url, ttl_seconds=3)
    publisher.send_signal(signal.SIGKILL)
    publisher.wait(timeout=10)
    info = admin.lock_info(redis_client, KEYS, dt.datetime.now(dt.UTC))
    assert info["held"] and info["pid"] == publisher.pid and info["holder_alive"] is False
    assert 0 <= info["age_seconds"] < 60 and 0 < info["expires_in_seconds"] <= 3
    killed_at = time.monotonic()
    while True:  # a rerun as Airflow's retry would make it
        try:
            rerun = lock.acquire_publish_lock(redis_client, KEYS, 3)
            break
        except PublishRefused:
            assert time.monotonic() - killed_at < 10, "the dead publisher's lock outlived its short TTL"
            time.sleep(0.2)
    lock.release_publish_lock(rerun)
    assert redis_client.exists(KEYS.user_recs(RUN_ID, "default", "stray-user")), (
        "the killed attempt's keys are still there"
    )
    from store_seeding import seed_run

    seed_run(redis_client, RUN_ID, {"alice": [("item-1", 1.0)]}, [("item-1", 1.0)])
    assert not redis_client.exists(KEYS.user_recs(RUN_ID, "default", "stray-user")), "the rerun removed them"


def test_sigterm_releases_the_lock_at_once(redis_server, redis_client):
    publisher = start_publisher(redis_server.url, ttl_seconds=600)
    assert redis_client.exists(KEYS.publish_lock)
    publisher.send_signal(signal.SIGTERM)
    publisher.wait(timeout=10)
    assert publisher.returncode != 0
    assert not redis_client.exists(KEYS.publish_lock), "released on the way out, not after its TTL"


def test_clear_lock_removes_a_dead_holders_lock_and_refuses_a_live_one(redis_server, redis_client):
    live = start_publisher(redis_server.url, ttl_seconds=600)
    try:
        with pytest.raises(PublishRefused, match=f"pid {live.pid} still runs; after making sure it is gone"):
            admin.clear_lock(redis_client, KEYS, dt.datetime.now(dt.UTC))
    finally:
        live.kill()
        live.wait(timeout=10)
    cleared = admin.clear_lock(redis_client, KEYS, dt.datetime.now(dt.UTC))
    assert cleared["cleared"] is True and cleared["holder"]["pid"] == live.pid
    assert not redis_client.exists(KEYS.publish_lock)
    assert admin.clear_lock(redis_client, KEYS, dt.datetime.now(dt.UTC)) == {
        "cleared": False, "reason": "no publish lock is held"
    }  # fmt: skip
