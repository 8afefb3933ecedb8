"""The publish job and the admin commands, with a real SparkSession and a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from store_seeding import tagged_lists, write_run_folder

from conf import with_overrides
from jobs import publish, storage
from jobs.run_layout import RunLayout
from jobs.runner import JobError
from store import admin, lock, writer
from store.contract import KeyLayout, decode_items, decode_meta, decode_user_list
from store.errors import PublishRefused
from store.registry import count_user_keys, known_runs
from tools.processes import ROOT, project_env

KEYS = KeyLayout("recs")
POLICY = writer.PublishPolicy(keep_runs=2, batch_size=7, lock_ttl_seconds=60)
RUNS = [
    (f"2026-11-{day}", f"2026-11-{day}_202611{day}T020000000Z", tag)
    for day, tag in zip((26, 27, 28, 29), "abcd", strict=True)
]


@pytest.fixture
def cfg(base_config, redis_server, tmp_path):
    return with_overrides(
        base_config,
        {
            "paths": {"runs_root": str(tmp_path / "runs")},
            "store": {"url": redis_server.url},
            "publish": {"keep_runs": POLICY.keep_runs, "batch_size": POLICY.batch_size},
        },
    )


def make_run(spark, cfg, index: int, users: int = 40) -> RunLayout:
    run_date, run_id, tag = RUNS[index]
    return write_run_folder(spark, cfg.paths.runs_root, run_date, run_id, tag, users=users)


def user_keys(client, run_id: str) -> int:
    return count_user_keys(client, KEYS, run_id)


def test_publish_loads_every_user_and_switches_the_pointer(spark, cfg, redis_client):
    layout = make_run(spark, cfg, 0)
    report = publish.run(spark, cfg, layout)
    run_id = RUNS[0][1]
    assert report["status"] == "published" and report["user_lists"] == report["keys_written"] == 40
    assert redis_client.get(KEYS.current).decode() == run_id
    assert user_keys(redis_client, run_id) == 40
    expected = tagged_lists("a", 40, 5)["user_0007"]
    items, seen, categories = decode_user_list(redis_client.get(KEYS.user_recs(run_id, "default", "user_0007")))
    assert (items, seen, categories) == (expected, [], []), "a run folder without user context"
    assert [item for item, _ in decode_items(redis_client.get(KEYS.popular(run_id)))][:2] == ["a-pop-01", "a-pop-02"]
    assert decode_items(redis_client.get(KEYS.popular(run_id, "Drama")))[0][0] == "a-drama-01"
    meta = decode_meta(redis_client.get(KEYS.meta(run_id)))
    assert meta["status"] == "complete" and meta["counts"]["user_lists"] == 40 and meta["categories"] == ["Drama"]
    assert (
        redis_client.ttl(KEYS.current) == -1 and redis_client.ttl(KEYS.user_recs(run_id, "default", "user_0007")) == -1
    )
    assert not redis_client.exists(KEYS.publish_lock), "lock released"


def test_a_run_folder_written_one_row_per_rank_publishes_the_same_lists(spark, cfg, redis_client):
    """Run folders from before lists were stored whole (restore and rollback reload them)."""
    run_date, run_id, tag = RUNS[0]
    layout = write_run_folder(spark, cfg.paths.runs_root, run_date, run_id, tag, users=40, per_rank=True)
    report = publish.run(spark, cfg, layout)
    assert report["user_lists"] == report["keys_written"] == 40
    for user, expected in tagged_lists(tag, 40, 5).items():
        assert decode_user_list(redis_client.get(KEYS.user_recs(run_id, "default", user))) == (expected, [], [])


def test_publishing_the_current_run_again_changes_nothing(spark, cfg, redis_client):
    layout = make_run(spark, cfg, 0)
    publish.run(spark, cfg, layout)
    assert publish.run(spark, cfg, layout) == {"status": "already_current", "run_id": RUNS[0][1]}


def test_a_run_without_manifest_is_refused(spark, cfg, redis_client):
    layout = make_run(spark, cfg, 0)
    storage.delete(spark, layout.manifest)
    with pytest.raises(JobError, match="has no manifest.json"):
        publish.run(spark, cfg, layout)
    assert redis_client.dbsize() == 0


def test_an_older_run_is_refused_unless_it_is_an_explicit_rollback(spark, cfg, redis_client):
    older, newer = make_run(spark, cfg, 0), make_run(spark, cfg, 1)
    publish.run(spark, cfg, newer)
    with pytest.raises(PublishRefused, match="older than the current run"):
        publish.run(spark, cfg, older)
    assert redis_client.get(KEYS.current).decode() == RUNS[1][1]
    publish.run(spark, cfg, older, rollback=True)
    assert redis_client.get(KEYS.current).decode() == RUNS[0][1]


def test_a_second_publisher_is_refused_by_the_lock(spark, cfg, redis_client):
    held = lock.acquire_publish_lock(redis_client, KEYS, 60)
    try:
        with pytest.raises(PublishRefused, match="another publisher holds"):
            publish.run(spark, cfg, make_run(spark, cfg, 0))
    finally:
        lock.release_publish_lock(held)
    assert redis_client.get(KEYS.current) is None


def test_retention_keeps_the_last_k_runs_and_rollback_steps_back(spark, cfg, redis_client):
    for index in range(4):
        publish.run(spark, cfg, make_run(spark, cfg, index))
    kept = [RUNS[3][1], RUNS[2][1]]
    assert known_runs(redis_client, KEYS) == kept
    assert [user_keys(redis_client, run_id) for _, run_id, _ in RUNS] == [0, 0, 40, 40]
    assert not list(redis_client.scan_iter(match=KEYS.run_pattern(RUNS[0][1])))
    result = admin.roll_back(redis_client, KEYS, POLICY)
    assert result == {"rolled_back_from": RUNS[3][1], "current": RUNS[2][1]}
    assert redis_client.get(KEYS.current).decode() == RUNS[2][1]
    with pytest.raises(PublishRefused, match="no retained run older"):
        admin.roll_back(redis_client, KEYS, POLICY)


def test_a_short_load_is_not_made_current_and_is_removed(spark, cfg, redis_client, monkeypatch):
    publish.run(spark, cfg, make_run(spark, cfg, 0))
    real_load = publish.load_lists

    def lossy_load(lists, kind, *args):
        return real_load(lists.limit(30), kind, *args)  # a writer that silently drops users

    monkeypatch.setattr(publish, "load_lists", lossy_load)
    with pytest.raises(PublishRefused, match="holds 30 user keys .* but the run has 40 user lists"):
        publish.run(spark, cfg, make_run(spark, cfg, 1))
    assert redis_client.get(KEYS.current).decode() == RUNS[0][1]
    assert user_keys(redis_client, RUNS[1][1]) == 0, "the half-loaded run was removed"
    assert known_runs(redis_client, KEYS) == [RUNS[0][1]]


def test_promote_refuses_without_the_lock(redis_client):
    held = lock.acquire_publish_lock(redis_client, KEYS, 60)
    writer.register_run(redis_client, KEYS, RUNS[0][1])
    redis_client.delete(KEYS.publish_lock)  # the lock expired under us
    with pytest.raises(PublishRefused, match="lock expired"):
        writer.promote(redis_client, KEYS, RUNS[0][1], held)
    assert redis_client.get(KEYS.current) is None


def test_admin_cli_status_and_rollback(spark, cfg, redis_server, redis_client):
    for index in range(2):
        publish.run(spark, cfg, make_run(spark, cfg, index))
    env = project_env(RECS__STORE__URL=redis_server.url, RECS__PATHS__RUNS_ROOT=cfg.paths.runs_root)
    status = subprocess.run([sys.executable, "-m", "store.admin", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    body = json.loads(status.stdout)
    assert body["current"] == RUNS[1][1] and [run["run_id"] for run in body["runs"]] == [RUNS[1][1], RUNS[0][1]]
    rolled = subprocess.run([sys.executable, "-m", "store.admin", "rollback"], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(rolled.stdout) == {"rolled_back_from": RUNS[1][1], "current": RUNS[0][1]}
    again = subprocess.run([sys.executable, "-m", "store.admin", "rollback"], env=env, cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 2 and again.stderr.startswith(
        f"rollback refused: no retained run older than the current run {RUNS[0][1]} under store contract 3;"
    )
    assert len(again.stderr.splitlines()) == 1


def test_the_run_replaced_by_a_publish_survives_retention(spark, cfg, redis_client):
    for index in range(3):
        publish.run(spark, cfg, make_run(spark, cfg, index))
    admin.roll_back(redis_client, KEYS, POLICY)  # current is now run 1, older than the two newest
    report = publish.run(spark, cfg, make_run(spark, cfg, 3))
    assert report["replaced_run_id"] == RUNS[1][1]
    assert user_keys(redis_client, RUNS[1][1]) == 40, "readers may still hold the run just replaced"
    assert known_runs(redis_client, KEYS) == [RUNS[3][1], RUNS[2][1], RUNS[1][1]]


def test_rollback_to_a_retained_run_switches_without_reloading(spark, cfg, redis_client):
    older, newer = make_run(spark, cfg, 0), make_run(spark, cfg, 1)
    publish.run(spark, cfg, older)
    publish.run(spark, cfg, newer)
    report = publish.run(spark, cfg, older, rollback=True)
    assert report["reused"] is True and "keys_written" not in report
    assert redis_client.get(KEYS.current).decode() == RUNS[0][1]


def test_losing_the_lock_during_the_load_refuses_the_switch(spark, cfg, redis_client, monkeypatch):
    real_load = publish.load_lists

    def load_then_lose_lock(*args):
        written = real_load(*args)
        redis_client.set(KEYS.publish_lock, "someone-else")  # our lock expired and another publisher took it
        return written

    monkeypatch.setattr(publish, "load_lists", load_then_lose_lock)
    with pytest.raises(PublishRefused, match="lock was lost"):
        publish.run(spark, cfg, make_run(spark, cfg, 0))
    assert redis_client.get(KEYS.current) is None


def test_the_lock_renewer_keeps_a_short_lock_alive_and_the_lock_is_released(redis_client):
    with lock.publish_lock(redis_client, KEYS, ttl_seconds=0.6) as held:
        token = redis_client.get(KEYS.publish_lock)
        time.sleep(2.0)  # more than three TTLs: without renewal the lock would be gone
        assert redis_client.get(KEYS.publish_lock) == token == held.local.token
        assert 0 < redis_client.pttl(KEYS.publish_lock) <= 600
    assert redis_client.get(KEYS.publish_lock) is None, "released at the end of the block"


def test_a_lock_taken_over_while_held_is_refused_at_the_end_of_the_block(redis_client):
    with pytest.raises(PublishRefused, match="lost during the load"):
        with lock.publish_lock(redis_client, KEYS, ttl_seconds=0.6):
            redis_client.set(KEYS.publish_lock, "another-publisher")
            time.sleep(0.5)  # the renewer's next tick finds the lock held by someone else
    assert redis_client.get(KEYS.publish_lock) == b"another-publisher", "another holder's lock is left alone"


def test_keep_runs_below_two_is_refused_before_spark_starts_and_the_store_is_untouched(
    spark, cfg, redis_server, redis_client
):
    publish.run(spark, cfg, make_run(spark, cfg, 0))
    newer = make_run(spark, cfg, 1)
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter()}
    env = project_env(
        RECS__STORE__URL=redis_server.url, RECS__PATHS__RUNS_ROOT=cfg.paths.runs_root, RECS__PUBLISH__KEEP_RUNS="1"
    )
    result = subprocess.run([sys.executable, "-m", "jobs.publish", "--run-date", newer.run_date],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, "one line and no Spark start-up output: " + result.stderr[-1500:]
    assert lines[0].endswith(
        "publish refused: config error: publish.keep_runs: must be at least 2, got 1: readers may still hold "
        "the previous run [from environment variable RECS__PUBLISH__KEEP_RUNS]"
    )
    assert {key: redis_client.dump(key) for key in redis_client.scan_iter()} == before
    assert redis_client.get(KEYS.current).decode() == RUNS[0][1]
    with pytest.raises(ValueError, match="keep_runs must be at least 2"):
        writer.PublishPolicy(keep_runs=1, batch_size=10, lock_ttl_seconds=60)


def test_a_store_holding_a_version_1_run_is_upgraded_by_the_next_publish(spark, cfg, redis_client, tmp_path):
    import json as _json

    from serving import create_app

    old = "2026-11-25_20261125T020000000Z"
    v1_meta = {"contract_version": 1, "run_id": old, "run_date": "2026-11-25", "status": "complete",
               "published_at": "2026-11-25T02:00:00+00:00", "counts": {"users": 1}, "metrics": {},
               "categories": []}  # fmt: skip
    redis_client.set(KEYS.meta(old), _json.dumps(v1_meta))
    redis_client.set(f"recs:run:{old}:user:alice", b'[["x",1.0]]')
    redis_client.set(KEYS.popular(old), b'[["p",1.0]]')
    redis_client.zadd(KEYS.runs, {old: 0})
    redis_client.set(KEYS.current, old)
    app = create_app({"store": {"url": cfg.store.url}, "api": {"fallback_file": None}})
    try:
        refused = app.test_client().get("/v1/recommendations/alice")
        assert refused.status_code == 500 and refused.get_json()["error"] == "store_data_error"
        assert app.test_client().get("/readyz").get_json() == {"ready": False, "reason": "store_data_error"}
        report = publish.run(spark, cfg, make_run(spark, cfg, 0))
        assert report["status"] == "published" and report["replaced_run_id"] == old
        deadline = time.monotonic() + 3
        while app.test_client().get("/v1/recommendations/user_0001").status_code != 200:
            assert time.monotonic() < deadline, "the current version's run was not served"
            time.sleep(0.05)
    finally:
        app.extensions["recs_store"].close()


def test_the_run_history_lists_retained_runs_newest_first(spark, cfg, redis_client):
    from serving import create_app

    for index in range(3):
        publish.run(spark, cfg, make_run(spark, cfg, index))
    app = create_app({"store": {"url": cfg.store.url}, "api": {"fallback_file": None}})
    try:
        body = app.test_client().get("/v1/runs").get_json()
    finally:
        app.extensions["recs_store"].close()
    assert body["current"] == RUNS[2][1]
    assert [(run["run_id"], run["current"], run["status"]) for run in body["runs"]] == [
        (RUNS[2][1], True, "complete"), (RUNS[1][1], False, "complete")
    ]  # fmt: skip
    assert body["runs"][0]["counts"]["user_lists"] == 40 and body["runs"][0]["run_date"] == RUNS[2][0]
