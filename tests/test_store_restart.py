"""A Redis that restarts empty: the API keeps answering from the run it held, marked fallback,
``/readyz`` names the loss, and ``python -m jobs.restore`` brings back the recorded current run
(a rollback included). Also the eviction-policy warning. Real redis-server processes without
persistence, killed with SIGKILL and started again empty on the same port."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from store_seeding import seed_run, tagged_lists, write_run_folder

from conf import with_overrides
from jobs import publish, restore
from jobs.run_layout import RunLayout
from jobs.runner import JobError
from serving import create_app
from store.contract import KeyLayout
from store.registry import (
    count_user_keys,
    current_record_location,
    known_runs,
    read_current_record,
    record_current_run,
)
from tools.processes import ROOT, RedisProcess, project_env

KEYS = KeyLayout("recs")
RUN_A, RUN_B = "2026-11-28_20261128T020000000Z", "2026-11-29_20261129T020000000Z"
USERS = {"alice": [("i1", 0.9), ("i2", 0.8), ("i3", 0.7)]}
POPULAR = [(f"p{k}", float(100 - k)) for k in range(30)]
LOST_WARNING = "has no current run"


@pytest.fixture
def volatile_redis(tmp_path):
    """A redis-server without AOF or snapshots: after a restart it is empty."""
    server = RedisProcess(tmp_path / "volatile-redis")
    server.workdir.mkdir()
    server.start()
    yield server
    server.stop()


def restart_empty(server: RedisProcess) -> None:
    """SIGKILL the server and start a new one on the same port, as a crash without persistence does."""
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    server.start()
    client = redis.Redis.from_url(server.url)
    assert client.dbsize() == 0
    client.close()


def api_settings(redis_url: str, fallback_file, **api) -> dict:
    return {"store": {"url": redis_url}, "api": {"pointer_refresh_seconds": 0.05, "fallback_file": str(fallback_file),
                                                  **api}}  # fmt: skip


def wait_for_ready_body(client, wanted: dict, seconds: float = 5.0) -> dict:
    """Poll /readyz until its body has the ``wanted`` fields (bounded in time)."""
    deadline = time.monotonic() + seconds
    while True:
        body = client.get("/readyz").get_json()
        if all(body.get(key) == value for key, value in wanted.items()):
            return body
        assert time.monotonic() < deadline, f"/readyz never had {wanted}; last {body}"
        time.sleep(0.05)


def reader_messages(caplog, text: str, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "recs.reader" and r.levelno == level
            and text in r.getMessage()]  # fmt: skip


def test_a_redis_restarted_empty_is_answered_from_the_held_run(volatile_redis, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="recs.reader")
    store = redis.Redis.from_url(volatile_redis.url)
    seed_run(store, RUN_A, USERS, POPULAR, {"Drama": [("d1", 9.0)]})
    fallback_file = tmp_path / "fallback.json"
    app = create_app(api_settings(volatile_redis.url, fallback_file))
    client = app.test_client()
    try:
        assert client.get("/v1/recommendations/alice?n=2").get_json()["source"] == "personalized"
        assert fallback_file.exists()

        restart_empty(volatile_redis)
        lost = wait_for_ready_body(client, {"reason": "store_lost_current_run"})
        assert lost == {"ready": False, "reason": "store_lost_current_run", "run_id": RUN_A}
        assert client.get("/readyz").status_code == 503
        answer = client.get("/v1/recommendations/alice?n=2")
        body = answer.get_json()
        assert answer.status_code == 200 and (body["run_id"], body["source"]) == (RUN_A, "fallback")
        assert body["items"] == [{"item_id": "p0", "score": 100.0, "rank": 1, "source": "fallback"},
                                 {"item_id": "p1", "score": 99.0, "rank": 2, "source": "fallback"}]  # fmt: skip
        popular = client.get("/v1/popular?n=1&category=Drama").get_json()
        assert (popular["run_id"], popular["source"], popular["items"][0]["item_id"]) == (RUN_A, "fallback", "d1")
        similar = client.get("/v1/similar/i1")
        assert similar.status_code == 503 and similar.get_json()["error"] == "store_unavailable"
        assert json.loads(fallback_file.read_text())["run_id"] == RUN_A, "the fallback file is kept"
        assert app.extensions["recs_store"].lost_current_run()

        time.sleep(0.5)  # about ten pointer refreshes, all finding no pointer
        assert len(reader_messages(caplog, LOST_WARNING)) == 1, "one warning for the loss, not one per refresh"

        seed_run(store, RUN_B, {"alice": [("new", 1.0)]}, [("pop-b", 1.0)])
        ready = wait_for_ready_body(client, {"ready": True})
        assert ready["run_id"] == RUN_B and client.get("/readyz").status_code == 200
        answer = client.get("/v1/recommendations/alice?n=1").get_json()
        assert (answer["run_id"], answer["source"]) == (RUN_B, "personalized")
        assert not app.extensions["recs_store"].lost_current_run()
    finally:
        app.extensions["recs_store"].close()
        store.close()


def test_a_worker_started_after_the_loss_answers_from_the_fallback_file(volatile_redis, tmp_path):
    store = redis.Redis.from_url(volatile_redis.url)
    seed_run(store, RUN_A, USERS, POPULAR)
    store.close()
    fallback_file = tmp_path / "fallback.json"
    first = create_app(api_settings(volatile_redis.url, fallback_file))
    assert first.test_client().get("/v1/recommendations/alice").get_json()["source"] == "personalized"
    first.extensions["recs_store"].close()
    restart_empty(volatile_redis)

    late = create_app(api_settings(volatile_redis.url, fallback_file))  # the server respawned a worker
    never_saw_a_run = create_app(api_settings(volatile_redis.url, tmp_path / "elsewhere.json"))
    try:
        client = late.test_client()
        body = client.get("/v1/recommendations/alice?n=1").get_json()
        assert (body["run_id"], body["source"], body["items"][0]["item_id"]) == (RUN_A, "fallback", "p0")
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json() == {"ready": False, "reason": "store_lost_current_run", "run_id": RUN_A}
        other = never_saw_a_run.test_client()
        assert other.get("/v1/recommendations/alice").get_json()["error"] == "no_published_run"
        assert other.get("/readyz").get_json() == {"ready": False, "reason": "no_published_run"}
    finally:
        late.extensions["recs_store"].close()
        never_saw_a_run.extensions["recs_store"].close()


@pytest.fixture
def cfg(base_config, volatile_redis, tmp_path):
    """Run folders under tmp_path and the volatile Redis."""
    (tmp_path / "runs").mkdir()
    return with_overrides(base_config, {"paths": {"runs_root": str(tmp_path / "runs")},
                                        "store": {"url": volatile_redis.url}})  # fmt: skip


def command(args: list[str], cfg, timeout: float = 300) -> subprocess.CompletedProcess:
    """A project command as an operator runs it, against the test's store and runs root."""
    env = project_env(RECS__STORE__URL=cfg.store.url, RECS__PATHS__RUNS_ROOT=cfg.paths.runs_root,
                      RECS__SPARK__MASTER="local[1]", **{"RECS__SPARK__CONF__spark.driver.memory": "1g",
                      "RECS__SPARK__CONF__spark.sql.shuffle.partitions": "4"})  # fmt: skip
    return subprocess.run([sys.executable, "-m", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_restore_brings_back_the_recorded_run_with_the_same_lists(spark, cfg, volatile_redis, tmp_path):
    layout = write_run_folder(spark, cfg.paths.runs_root, "2026-11-28", RUN_A, "a")
    publish.run(spark, cfg, layout)
    record = read_current_record(cfg.paths.runs_root)
    assert (record["run_id"], record["run_folder"], record["by"]) == (RUN_A, layout.run_dir, "publish")
    assert record["store"]["key_prefix"] == "recs" and "password" not in json.dumps(record)
    app = create_app(api_settings(volatile_redis.url, tmp_path / "fallback.json"))
    client = app.test_client()
    try:
        before = client.get("/v1/recommendations/user_0007?n=5").get_json()
        assert (before["run_id"], before["source"]) == (RUN_A, "personalized")
        assert [item["item_id"] for item in before["items"]] == [
            item for item, _ in tagged_lists("a", 40, 5)["user_0007"]
        ]

        restart_empty(volatile_redis)
        wait_for_ready_body(client, {"reason": "store_lost_current_run", "run_id": RUN_A})
        assert client.get("/v1/recommendations/user_0007?n=5").get_json()["source"] == "fallback"

        restored = command(["jobs.restore"], cfg)
        assert restored.returncode == 0, restored.stderr[-2000:]
        report = json.loads(restored.stdout)
        assert (report["status"], report["run_id"], report["user_lists"]) == ("published", RUN_A, 40)
        wait_for_ready_body(client, {"ready": True, "run_id": RUN_A})
        after = client.get("/v1/recommendations/user_0007?n=5").get_json()
        assert {**after, "rec_id": None} == {**before, "rec_id": None}, "the same run, the same list"
        restored_record = read_current_record(cfg.paths.runs_root)
        assert (restored_record["run_id"], restored_record["by"]) == (RUN_A, "restore")

        again = command(["jobs.restore"], cfg)
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads(again.stdout) == {"status": "already_current", "run_id": RUN_A}
        store = redis.Redis.from_url(volatile_redis.url)
        assert known_runs(store, KEYS) == [RUN_A] and count_user_keys(store, KEYS, RUN_A) == 40
        assert read_current_record(cfg.paths.runs_root) == restored_record, "nothing switched, nothing recorded"
        store.close()
    finally:
        app.extensions["recs_store"].close()


def test_a_rollback_is_what_a_restore_brings_back(spark, cfg, volatile_redis):
    older = write_run_folder(spark, cfg.paths.runs_root, "2026-11-28", RUN_A, "a")
    newer = write_run_folder(spark, cfg.paths.runs_root, "2026-11-29", RUN_B, "b")
    publish.run(spark, cfg, older)
    publish.run(spark, cfg, newer)
    assert read_current_record(cfg.paths.runs_root)["run_id"] == RUN_B
    rolled = command(["store.admin", "rollback"], cfg, timeout=60)
    assert json.loads(rolled.stdout) == {"rolled_back_from": RUN_B, "current": RUN_A}, rolled.stderr
    record = read_current_record(cfg.paths.runs_root)
    assert (record["run_id"], record["by"], record["run_folder"]) == (RUN_A, "rollback", older.run_dir)

    restart_empty(volatile_redis)
    restored = command(["jobs.restore"], cfg)
    assert restored.returncode == 0, restored.stderr[-2000:]
    store = redis.Redis.from_url(volatile_redis.url)
    assert store.get(KEYS.current).decode() == RUN_A, "the rolled-back-to run, not the newest run folder"
    assert known_runs(store, KEYS) == [RUN_A] and count_user_keys(store, KEYS, RUN_A) == 40
    store.close()


def test_a_restore_into_a_store_that_kept_the_run_only_moves_the_pointer(spark, cfg, volatile_redis):
    layout = write_run_folder(spark, cfg.paths.runs_root, "2026-11-28", RUN_A, "a")
    publish.run(spark, cfg, layout)
    store = redis.Redis.from_url(volatile_redis.url)
    store.delete(KEYS.current)  # a partial loss: the run's keys are still there
    report = restore.run(spark, cfg, layout, RUN_A)
    assert (report["status"], report["reused"]) == ("published", True)
    assert store.get(KEYS.current).decode() == RUN_A
    assert known_runs(store, KEYS) == [RUN_A] and count_user_keys(store, KEYS, RUN_A) == 40
    store.close()


def test_a_run_folder_that_was_run_again_is_not_restored_as_the_recorded_run(spark, cfg):
    layout = write_run_folder(spark, cfg.paths.runs_root, "2026-11-28", "2026-11-28_20261128T090000000Z", "z")
    with pytest.raises(JobError, match=r"now holds run 2026-11-28_20261128T090000000Z .*--run-id"):
        restore.run(spark, cfg, layout, RUN_A)
    missing = RunLayout(cfg.paths.runs_root, "2026-11-27")
    with pytest.raises(JobError, match="has no manifest.json"):
        restore.run(spark, cfg, missing, "2026-11-27_20261127T020000000Z")


def test_restore_without_a_record_refuses_in_one_line_before_spark_starts(cfg):
    result = command(["jobs.restore"], cfg, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "restore refused: no current-run record at " in lines[0], result.stderr[-1500:]
    assert current_record_location(cfg.paths.runs_root) in lines[0]
    record_current_run(cfg.paths.runs_root, RUN_A, "publish", {"address": "x", "key_prefix": "other"})
    other = command(["jobs.restore"], cfg, timeout=60)
    assert other.returncode == 2 and "key prefix 'other'" in other.stderr


def test_the_record_is_replaced_atomically_and_names_the_run_folder(tmp_path):
    runs_root = tmp_path / "runs"
    runs_root.mkdir()
    store = {"address": "redis://h:6379/0", "key_prefix": "recs"}
    assert record_current_run(str(runs_root), RUN_A, "publish", store) == f"{runs_root}/current-run.json"
    record_current_run(str(runs_root), RUN_B, "rollback", store)
    assert [path.name for path in runs_root.iterdir()] == ["current-run.json"], "no temporary file left"
    record = read_current_record(str(runs_root))
    assert {key: record[key] for key in ("record_version", "run_id", "run_folder", "by", "store")} == {
        "record_version": 1, "run_id": RUN_B, "run_folder": f"{runs_root}/2026-11-29", "by": "rollback",
        "store": store}  # fmt: skip
    missing_root = tmp_path / "nowhere"
    assert record_current_run(str(missing_root), RUN_A, "publish", store) is None, "logged, never raised"
    assert not missing_root.exists()
    (runs_root / "current-run.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        read_current_record(str(runs_root))


def test_an_allkeys_eviction_policy_with_a_memory_limit_is_warned_about(volatile_redis, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="recs.reader")
    store = redis.Redis.from_url(volatile_redis.url)
    store.config_set("maxmemory", "100mb")
    store.config_set("maxmemory-policy", "allkeys-lru")
    seed_run(store, RUN_A, USERS, POPULAR)
    app = create_app(api_settings(volatile_redis.url, tmp_path / "fallback.json"))
    client = app.test_client()
    try:
        client.get("/v1/recommendations/alice")  # first use: the watcher checks the policy at start
        deadline = time.monotonic() + 3
        while not reader_messages(caplog, "maxmemory-policy is allkeys-lru"):
            assert time.monotonic() < deadline, "no start-up warning about the eviction policy"
            time.sleep(0.05)
        for _ in range(3):
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.get_json()["warnings"] == ["eviction_policy_may_evict_run_keys: allkeys-lru"]
        assert len(reader_messages(caplog, "maxmemory-policy is")) == 1, "warned once"

        for policy, maxmemory in (("volatile-lru", "100mb"), ("noeviction", "100mb"), ("allkeys-lfu", "0")):
            store.config_set("maxmemory-policy", policy)
            store.config_set("maxmemory", maxmemory)
            ready = client.get("/readyz")
            assert ready.status_code == 200 and "warnings" not in ready.get_json(), policy
    finally:
        app.extensions["recs_store"].close()
        store.close()


def test_an_eviction_policy_that_cannot_be_read_is_passed_over(volatile_redis, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="recs.reader")
    store = redis.Redis.from_url(volatile_redis.url)
    seed_run(store, RUN_A, USERS, POPULAR)
    store.config_set("maxmemory", "100mb")
    store.config_set("maxmemory-policy", "allkeys-lru")
    store.acl_setuser("api", enabled=True, passwords=["+api-secret"], keys=["*"], channels=["*"],
                      commands=["+@all", "-config"])  # fmt: skip
    url = volatile_redis.url.replace("redis://", "redis://api:api-secret@")
    app = create_app(api_settings(url, tmp_path / "fallback.json"))
    client = app.test_client()
    try:
        for _ in range(3):
            ready = client.get("/readyz")
            assert ready.status_code == 200 and "warnings" not in ready.get_json()
        assert len(reader_messages(caplog, "cannot read Redis's eviction policy", logging.INFO)) == 1
        assert not reader_messages(caplog, "maxmemory-policy is")
    finally:
        app.extensions["recs_store"].close()
        store.close()
