"""Publishing safely: the size check against Redis's maxmemory, a re-run of the same date that
leaves the store as one run would, and pruning an old run while the API serves under load.
Every Redis here is a private redis-server of the test's own, so maxmemory can be set."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import subprocess
import sys
import threading
import time

import pytest
import redis
from store_seeding import seed_run, tagged_lists, write_run_folder

from bench.load import run_load
from conf import with_overrides
from jobs import publish
from jobs.run_footprint import printed_score_width, run_footprint
from store import memory_budget, writer
from store.contract import KeyLayout, decode_meta, encode_items, encode_user_list
from store.errors import PublishRefused
from store.memory_budget import ListTotals
from tools.processes import ROOT, ApiServer, RedisProcess, project_env

log = logging.getLogger("recs.tests.publish_safety")
KEYS = KeyLayout("recs")
RUN_DATE, RUN_ID = "2026-11-29", "2026-11-29_20261129T020000000Z"
# Large enough that the run's keys, not Redis's own bookkeeping, dominate used_memory.
USERS, PER_USER = 6000, 20


@pytest.fixture(scope="module")
def run_folder(spark, tmp_path_factory):
    """One completed run folder, published by several tests into Redis servers of their own."""
    runs_root = str(tmp_path_factory.mktemp("runs"))
    return write_run_folder(spark, runs_root, RUN_DATE, RUN_ID, "a", users=USERS, per_user=PER_USER)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, whose maxmemory the test may set."""
    server = RedisProcess(tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    client = redis.Redis.from_url(server.url)
    yield server, client
    client.close()
    server.stop()


@pytest.fixture
def cfg(base_config, run_folder, private_redis):
    server, _ = private_redis
    return with_overrides(base_config, {"paths": {"runs_root": run_folder.runs_root}, "store": {"url": server.url}})


def used_memory(client) -> int:
    return client.info("memory")["used_memory"]


def run_snapshot(client, run_id: str) -> tuple[int, str]:
    """How many keys the run has and a SHA-256 over its sorted keys and values; the meta's
    publish time is left out, as a re-run publishes at a later time by design."""
    digest, count = hashlib.sha256(), 0
    for key in sorted(client.scan_iter(match=KEYS.run_pattern(run_id), count=1000)):
        value = client.get(key)
        if key.decode() == KEYS.meta(run_id):
            meta = {field: v for field, v in decode_meta(value).items() if field != "published_at"}
            value = json.dumps(meta, sort_keys=True).encode()
        digest.update(key + b"\0" + value + b"\0")
        count += 1
    return count, digest.hexdigest()


def stored_score_width(score: float) -> int:
    """How many characters the store's encoder spends on a score."""
    return len(encode_items([("", score)])) - len(encode_items([("", 0.0)])) + len("0.0")


def test_the_estimate_counts_the_bytes_the_encoder_writes():
    rng = random.Random(3)
    lists = [
        ([(f"item-{rng.randrange(10**rng.randint(1, 7))}", rng.random()) for _ in range(rng.randint(1, 40))],
         [f"seen-{rng.randrange(999)}" for _ in range(rng.randint(0, 9))], ["Drama", "Comedy"][: rng.randint(0, 2)])
        for _ in range(500)
    ]  # fmt: skip
    encoded = sum(len(encode_user_list(items, seen, categories)) for items, seen, categories in lists)
    totals = ListTotals(
        lists=len(lists),
        pairs=sum(len(items) for items, _, _ in lists),
        pair_id_bytes=sum(len(item) for items, _, _ in lists for item, _ in items),
        key_id_bytes=0,
        score_chars=sum(stored_score_width(score) for items, _, _ in lists for _, score in items),
        strings=sum(len(seen) + len(categories) for _, seen, categories in lists),
        string_bytes=sum(len(s) for _, seen, categories in lists for s in (*seen, *categories)),
    )
    estimate = totals.json_bytes(len(encode_user_list([], [], [])))
    # Only the comma before each array's first element is counted where there is none.
    assert encoded <= estimate <= encoded + 3 * len(lists)


def test_the_printed_score_width_matches_the_contract(spark):
    scores = [0.99, 0.123456789, 12.0, 100000.0, -0.5, 1.5e-05, 3.0, 0.001234567, 987.654321]
    frame = spark.createDataFrame([(score,) for score in scores], "score double")
    widths = [row[0] for row in frame.select(printed_score_width(frame["score"])).collect()]
    expected = [stored_score_width(score) for score in scores]
    off = [(score, w, e) for score, w, e in zip(scores, widths, expected, strict=True) if w != e]
    # Only scores below 1e-4 may be off, by a character: Java prints 1.5e-05, the store 0.000015.
    assert all(abs(score) < 1e-4 and abs(w - e) <= 1 for score, w, e in off), off


def test_a_run_that_would_pass_maxmemory_is_refused_with_one_line_and_nothing_written(run_folder, private_redis):
    server, client = private_redis
    client.config_set("maxmemory", used_memory(client) + 2 * 2**20)
    env = project_env(RECS__STORE__URL=server.url, RECS__PATHS__RUNS_ROOT=run_folder.runs_root,
                      **{"RECS__SPARK__CONF__spark.driver.memory": "1g"})  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "jobs.publish", "--run-date", RUN_DATE], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    refusals = [line for line in result.stderr.splitlines() if "publish refused:" in line]
    assert len(refusals) == 1, result.stderr[-3000:]
    message = refusals[0].split("publish refused: ", 1)[1]
    log.info("the refusal: %s", message)
    assert message.startswith(f"run {RUN_ID} needs about ")
    assert "MB free under maxmemory" in message and message.endswith("; raise maxmemory")
    assert sum(1 for _ in client.scan_iter(match="recs:run:*", count=1000)) == 0
    assert client.dbsize() == 0, "no run registered, no pointer and no lock left behind"


def test_a_run_that_fits_is_published_and_the_estimate_is_close_to_what_it_took(spark, cfg, run_folder, private_redis):
    _, client = private_redis
    client.config_set("maxmemory", used_memory(client) + 64 * 2**20)
    report = publish.run(spark, cfg, run_folder)
    assert report["status"] == "published" and report["user_lists"] == USERS
    memory = report["memory"]
    assert memory["maxmemory"] == int(client.config_get("maxmemory")["maxmemory"])
    assert memory["measured_bytes"] > USERS * PER_USER * 10, "the run's keys were measured"
    # The per-key constants were fitted on other lists (store/memory_budget.py) and put those
    # within 5%; this run's lists are shorter, with shorter scores: +0.3% to +5.1% in seven runs here.
    assert abs(memory["estimate_error"]) <= 0.10, memory


def test_a_run_that_fits_only_without_the_margin_is_refused(spark, cfg, run_folder, private_redis):
    _, client = private_redis
    earlier = "2026-11-28_20261128T020000000Z"
    seed_run(client, earlier, tagged_lists("e", 50, 5), [("pop-1", 1.0)])
    store_before = {key: client.dump(key) for key in client.scan_iter()}
    estimate = run_footprint(spark, run_folder, KEYS, RUN_ID).redis_bytes
    client.config_set("maxmemory", used_memory(client) + int(estimate * 1.1))
    refusal = r"estimated \+ publish.memory_margin 25%\).* keep fewer runs \(publish.keep_runs 3; Redis holds 1 now"
    with pytest.raises(PublishRefused, match=refusal):
        publish.run(spark, cfg, run_folder)
    assert {key: client.dump(key) for key in client.scan_iter()} == store_before, "the store is as it was"


def test_a_redis_user_without_info_publishes_unchecked_with_a_warning(private_redis, caplog):
    server, admin = private_redis
    admin.acl_setuser("publisher", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"],
                      categories=["+@all"], commands=["-info"])  # fmt: skip
    admin.config_set("maxmemory", used_memory(admin) + 2 * 2**20)
    too_big = memory_budget.RunFootprint(memory_budget.KeyGroup(100_000, 100_000 * 1000))

    def publish_as(client, run_id: str) -> dict:
        def load(loading_run_id: str) -> writer.LoadedRun:
            client.set(KEYS.user_recs(loading_run_id, "default", "alice"), encode_user_list([("x", 1.0)], [], []))
            return writer.LoadedRun(1, 1, {None: [("x", 1.0)]})

        manifest = {"run_id": run_id, "run_date": run_id[:10], "metrics": {}, "variants": ["default"]}
        policy = writer.PublishPolicy(keep_runs=2, batch_size=10, lock_ttl_seconds=30)
        return writer.publish_run(client, KEYS, policy, manifest, load, footprint=lambda: too_big)

    with pytest.raises(PublishRefused, match="needs about 139.2 MB"):
        publish_as(admin, RUN_ID)
    restricted = redis.Redis(port=server.port, username="publisher", password="secret")
    assert publish_as(restricted, RUN_ID)["status"] == "published"
    restricted.close()
    assert "not checked against maxmemory: this Redis user may not run INFO" in caplog.text


def test_the_same_date_published_again_leaves_the_store_as_one_run_would(
    spark, cfg, run_folder, private_redis, monkeypatch
):
    _, client = private_redis
    real_load = publish.load_lists

    def load_then_lose_the_lock(*args):
        written = real_load(*args)
        client.delete(KEYS.publish_lock)  # the lock expired: this attempt must not make its run current
        return written

    monkeypatch.setattr(publish, "load_lists", load_then_lose_the_lock)
    with pytest.raises(PublishRefused, match="lock"):
        publish.run(spark, cfg, run_folder)
    assert client.get(KEYS.current) is None
    first = run_snapshot(client, RUN_ID)
    first_memory = used_memory(client)
    assert first[0] == USERS + 5, "every user list, two popular lists, item categories, cold items and meta"

    monkeypatch.undo()
    report = publish.run(spark, cfg, run_folder)  # Airflow's retry of the same date
    assert report["status"] == "published" and client.get(KEYS.current).decode() == RUN_ID
    assert run_snapshot(client, RUN_ID) == first
    assert abs(used_memory(client) - first_memory) <= 0.05 * first_memory
    assert publish.run(spark, cfg, run_folder) == {"status": "already_current", "run_id": RUN_ID}
    assert run_snapshot(client, RUN_ID) == first


def command_calls(client) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("keys", "del", "unlink", "scan")}


@pytest.mark.faults
def test_pruning_a_large_old_run_under_load_keeps_p99_and_uses_no_keys_or_del(private_redis, tmp_path):
    server, client = private_redis
    old, previous, current = (f"2026-11-{day}_202611{day}T020000000Z" for day in (27, 28, 29))
    popular = [(f"pop-{rank}", float(100 - rank)) for rank in range(10)]
    seed_run(client, old, tagged_lists("old", 50_000, 5), popular)
    for run_id, tag in ((previous, "prev"), (current, "cur")):
        seed_run(client, run_id, tagged_lists(tag, 2000, 20), popular)
    old_keys = sum(1 for _ in client.scan_iter(match=KEYS.run_pattern(old), count=1000))
    assert old_keys >= 50_000
    api = ApiServer(server.url, tmp_path / "api.log", api={"workers": 2, "threads": 4})
    api.start()
    paths = [f"/v1/recommendations/user_{user:04d}?n=10" for user in range(0, 2000, 7)]
    try:
        run_load(api.url, paths, concurrency=8, seconds=2)  # warm-up: workers, connections, caches
        before = run_load(api.url, paths, concurrency=8, seconds=5)
        calls_before = command_calls(client)
        pruning = PruneAfter(server.url, delay_seconds=2.0)
        pruning.start()
        loaded = run_load(api.url, paths, concurrency=8, seconds=8)
        pruning.join()
        calls_after = command_calls(client)
        after = run_load(api.url, paths, concurrency=8, seconds=5)
    finally:
        api.stop()
    # Others share this machine: the baseline is the mean of a run before and one after, so a
    # change in their load during the test weighs on both sides alike.
    baseline_p99 = (before.p99_ms + after.p99_ms) / 2
    log.info("p99 %.2f / %.2f ms before / after, %.2f ms while pruning %d keys in %.2f s; commands %s -> %s",
             before.p99_ms, after.p99_ms, loaded.p99_ms, old_keys, pruning.seconds, calls_before,
             calls_after)  # fmt: skip
    assert pruning.pruned == [old] and pruning.error is None
    assert sum(1 for _ in client.scan_iter(match=KEYS.run_pattern(old), count=1000)) == 0
    assert pruning.finished_at - pruning.started_at < 7.0, "the prune ran inside the 8 s of load"
    assert before.errors == 0 and loaded.errors == 0 and after.errors == 0
    assert calls_after["keys"] == calls_before["keys"] and calls_after["del"] == calls_before["del"]
    assert calls_after["unlink"] - calls_before["unlink"] >= old_keys
    # 2 ms on top of 1.5x: on 2 cores the load generator, the API server, Redis and the pruner share
    # the CPUs, and on a quiet machine (p99 of a few ms) scheduling alone moves p99 by a
    # millisecond or two. On a busy one the spread is wider: with a load average near 12 from
    # other work, three runs gave baselines (before / after) of 54 / 23, 20 / 16 and 28 / 32 ms
    # and 44, 17 and 36 ms while pruning.
    assert loaded.p99_ms <= 1.5 * baseline_p99 + 2.0, (before, loaded, after, pruning.seconds)


class PruneAfter(threading.Thread):
    """Retention as publish_run runs it (keep 2 complete runs), started ``delay_seconds`` into
    a load run (which itself starts one second after it is called)."""

    def __init__(self, url: str, delay_seconds: float):
        super().__init__(name="prune-under-load")
        self.url, self.delay = url, delay_seconds
        self.pruned: list[str] | None = None
        self.error: BaseException | None = None
        self.started_at = self.finished_at = 0.0

    @property
    def seconds(self) -> float:
        return round(self.finished_at - self.started_at, 3)

    def run(self):
        client = redis.Redis.from_url(self.url)
        time.sleep(self.delay)
        self.started_at = time.monotonic()
        try:
            self.pruned = writer.prune(client, KEYS, keep=2, batch_size=500)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        self.finished_at = time.monotonic()
        client.close()


def test_a_cluster_is_checked_node_by_node_from_each_primarys_info():
    from redis_cluster import LoopbackRedisCluster

    from store.connection import RedisSettings, connect

    nodes = LoopbackRedisCluster()
    try:
        nodes.start()
        client = connect(RedisSettings(nodes.url, cluster=True))
        footprint = memory_budget.RunFootprint(memory_budget.KeyGroup(30_000, 30_000 * 1000))  # ~35 MB in all
        for port in nodes.ports:
            nodes.node(port).config_set("maxmemory", 200 * 2**20)
        budget = memory_budget.check_memory(client, RUN_ID, footprint, 0.25, 0, 3)
        per_node = [nodes.node(port).info("memory")["used_memory"] for port in nodes.ports]
        assert abs(budget.used_before - sum(per_node)) < 0.05 * sum(per_node), "used_memory of every primary"
        tight = nodes.ports[1]
        # Room for the whole run on the cluster, but not for this node's third of it.
        nodes.node(tight).config_set("maxmemory", per_node[1] + 8 * 2**20)
        with pytest.raises(PublishRefused, match=rf"Redis node 127.0.0.1:{tight} \(its share 13.9 MB\) has"):
            memory_budget.check_memory(client, RUN_ID, footprint, 0.25, 0, 3)
        client.close()
    finally:
        nodes.stop()
