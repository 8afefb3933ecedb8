"""The same store on a real 3-master Redis Cluster on loopback, changed by one setting
(``store.cluster: true``): publish (the Spark job and the writer sequence), serve, rollback,
retention, events and a pointer switch under load. redis-py's RedisCluster refuses any
multi-key command whose keys are in different slots, so every test passing is the proof that
none crosses slots; test_multi_key_commands_are_per_key_or_share_a_hash_tag checks the code for them."""

from __future__ import annotations

import ast
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from redis_cluster import LoopbackRedisCluster
from store_seeding import seed_run, tagged_lists, write_run_folder

from conf import with_overrides
from jobs import publish
from store import admin, writer
from store.connection import connect, writer_settings
from store.contract import DEFAULT_VARIANT, KeyLayout, decode_user_list
from store.errors import PublishRefused
from store.events import EventLog
from store.registry import count_user_keys, current_run, known_runs
from tools.processes import ROOT, project_env

pytestmark = pytest.mark.redis_cluster
log = logging.getLogger("recs.tests.cluster")

KEYS = KeyLayout("recs")
POLICY = writer.PublishPolicy(keep_runs=2, batch_size=50, lock_ttl_seconds=60)
RUN_IDS = [f"2026-11-{day}_202611{day}T020000000Z" for day in range(20, 28)]
USERS, PER_USER = 300, 5


@pytest.fixture(scope="module")
def cluster():
    """Three masters on free loopback ports for this module; stopped and removed even when a test fails."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not on PATH; install redis-server (it brings redis-cli)", pytrace=False)
    nodes = LoopbackRedisCluster()
    try:
        started = time.monotonic()
        nodes.start()
        log.info("cluster %s up in %.1f s", nodes.addresses, time.monotonic() - started)
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def cfg(base_config, cluster, tmp_path):
    """The repository's config with the one cluster setting, pointing at one node."""
    return with_overrides(
        base_config,
        {
            "store": {"url": cluster.url, "cluster": True},
            "publish": {"keep_runs": POLICY.keep_runs, "batch_size": POLICY.batch_size},
            "paths": {"runs_root": str(tmp_path / "runs")},
            "api": {"pointer_refresh_seconds": 0.05, "fallback_file": str(tmp_path / "fallback.json")},
        },
    )


@pytest.fixture
def store(cfg):
    """A cluster client made by the project's own connect, on a cluster emptied on every primary."""
    client = connect(writer_settings(cfg.store))
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def api(cfg, store):
    """The Flask app on the cluster, through its test client; its Redis clients are closed afterwards."""
    from serving import create_app

    app = create_app(cfg)
    yield app.test_client()
    app.extensions["recs_store"].close()
    app.extensions["recs_events"].close()


def popular_of(tag: str) -> list[tuple[str, float]]:
    return [(f"{tag}-pop-{rank:02d}", float(100 - rank)) for rank in range(1, 11)]


def publish_lists(client, run_id: str, tag: str, pause: float = 0.0, rollback: bool = False) -> dict:
    """Publish ``tagged_lists(tag)`` through the writer's sequence with POLICY (keep_runs 2),
    pausing between batches so that a load takes a while."""
    rows = [(DEFAULT_VARIANT, user, items) for user, items in tagged_lists(tag, USERS, PER_USER).items()]

    def load(loading_run_id: str) -> writer.LoadedRun:
        pipe = client.pipeline(transaction=False)
        for key, value in writer.user_list_writes(rows, KEYS, loading_run_id):
            pipe.set(key, value)
            if len(pipe) >= POLICY.batch_size:
                pipe.execute()
                time.sleep(pause)
        pipe.execute()
        return writer.LoadedRun(len(rows), len(rows), {None: popular_of(tag)})

    manifest = {"run_id": run_id, "run_date": run_id[:10], "code_version": "test", "metrics": {}}
    return writer.publish_run(client, KEYS, POLICY, manifest, load, rollback=rollback)


def user_keys_per_node(cluster: LoopbackRedisCluster, run_id: str) -> dict[int, int]:
    return cluster.keys_per_node(KEYS.user_pattern(run_id))


def test_hash_tags_keep_control_and_event_keys_in_one_slot_each(cluster):
    node = cluster.node(cluster.ports[0])
    try:

        def slots(names) -> set[int]:
            return {node.cluster("keyslot", name) for name in names}

        control = [KEYS.current, KEYS.runs, KEYS.publish_lock]
        events = [KEYS.events_stream, KEYS.events_trimmed_before, KEYS.idempotency("batch-1"),
                  KEYS.experiment_definition("ranking"), KEYS.experiment_data("ranking", "salt", "counts"),
                  KEYS.experiment_data("ranking", "salt", "assigned", "als"),
                  KEYS.experiment_data("ranking", "salt", "exposed", "als")]  # fmt: skip
        per_run = [KEYS.user_recs(RUN_IDS[0], DEFAULT_VARIANT, f"user_{u}") for u in range(50)]
        assert len(slots(control)) == 1, "the promote script's keys share {recs}"
        assert len(slots(events)) == 1, "the event script's keys share {recs:events}"
        assert slots(control) != slots(events)
        assert len(slots(per_run)) > 40, "per-run keys carry no hash tag"
    finally:
        node.close()


@pytest.mark.slow
def test_the_publish_job_loads_into_the_cluster_and_the_admin_cli_rolls_back(spark, cfg, cluster, store):
    folders = [
        write_run_folder(spark, cfg.paths.runs_root, run_id[:10], run_id, tag, users=120)
        for run_id, tag in zip(RUN_IDS[:2], "ab", strict=True)
    ]
    for folder, run_id in zip(folders, RUN_IDS[:2], strict=True):
        report = publish.run(spark, cfg, folder)
        assert report["status"] == "published" and report["run_id"] == run_id and report["keys_written"] == 120
    assert current_run(store, KEYS) == RUN_IDS[1]
    per_node = user_keys_per_node(cluster, RUN_IDS[1])
    log.info("publish job: user keys of %s per node %s", RUN_IDS[1], per_node)
    assert sum(per_node.values()) == 120 == count_user_keys(store, KEYS, RUN_IDS[1])
    assert all(per_node.values()), f"user keys on every master: {per_node}"
    items, _, _ = decode_user_list(store.get(KEYS.user_recs(RUN_IDS[1], DEFAULT_VARIANT, "user_0007")))
    assert items == tagged_lists("b", 120, 5)["user_0007"]

    env = project_env(RECS__STORE__URL=cluster.url, RECS__STORE__CLUSTER="true")
    status = subprocess.run([sys.executable, "-m", "store.admin", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(status.stdout)["current"] == RUN_IDS[1]
    rolled = subprocess.run([sys.executable, "-m", "store.admin", "rollback"], env=env, cwd=ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(rolled.stdout) == {"rolled_back_from": RUN_IDS[1], "current": RUN_IDS[0]}
    assert current_run(store, KEYS) == RUN_IDS[0]


def test_the_api_serves_every_endpoint_from_the_cluster(api, store):
    users = tagged_lists("a", USERS, PER_USER)
    seed_run(store, RUN_IDS[0], users, popular_of("a"), categories={"Drama": [("a-drama-01", 9.0)]},
             context={"user_0001": (["a-pop-01"], ["Drama"])},
             catalogue=({"a-item-002": ["Drama"]}, {"Drama": ["a-cold-1"]}),
             similar={"a-item-002": ("als", [("a-item-003", 0.9), ("a-item-004", 0.8)])})  # fmt: skip
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["run_id"] == RUN_IDS[0]
    body = api.get("/v1/recommendations/user_0042?n=5").get_json()
    assert (body["run_id"], body["source"]) == (RUN_IDS[0], "personalized")
    assert [item["item_id"] for item in body["items"]] == [item for item, _ in users["user_0042"]]
    unknown = api.get("/v1/recommendations/nobody?n=3").get_json()
    assert unknown["source"] == "popular" and unknown["items"][0]["item_id"] == "a-pop-01"
    assert api.get("/v1/popular?n=2").get_json()["items"][1]["item_id"] == "a-pop-02"
    assert api.get("/v1/popular?category=Drama").get_json()["items"][0]["item_id"] == "a-drama-01"
    similar = api.get("/v1/similar/a-item-002").get_json()
    assert similar["method"] == "als" and [item["item_id"] for item in similar["items"]] == ["a-item-003", "a-item-004"]
    assert api.get("/v1/similar/nothing").status_code == 404
    runs = api.get("/v1/runs").get_json()
    assert runs["current"] == RUN_IDS[0] and runs["runs"][0]["counts"]["user_lists"] == USERS


def test_events_and_experiment_statistics_on_the_cluster(api, store):
    shares = {"als": 0.5, "popular": 0.5}
    variant_lists = {variant: tagged_lists(variant, 40, 3) for variant in shares}
    experiment = {"name": "ranking", "salt": "salt-1", "control": "als", "shares": shares}
    seed_run(store, RUN_IDS[0], {}, popular_of("a"), experiment=experiment, variant_lists=variant_lists)
    served = [api.get(f"/v1/recommendations/user_{u:04d}").get_json() for u in range(40)]
    assert {body["variant"] for body in served} == set(shares)
    events = [{"user_id": body["user_id"], "item_id": body["items"][0]["item_id"], "type": "impression",
               "rec_id": body["rec_id"]} for body in served]  # fmt: skip
    events.append({"user_id": "user_0000", "item_id": "x", "type": "click", "variant": "als"})
    headers = {"Idempotency-Key": "cluster-batch-1"}
    first = api.post("/v1/events", json=events, headers=headers)
    again = api.post("/v1/events", json=events, headers=headers)
    assert (first.status_code, first.get_json()) == (202, {"accepted": 41, "duplicate": False})
    assert again.get_json() == {"accepted": 0, "duplicate": True}
    assert store.xlen(KEYS.events_stream) == 41
    report = api.get("/v1/experiments/ranking").get_json()
    rows = {row["variant"]: row for row in report["variants"]}
    assert sum(row["assigned_users"] for row in rows.values()) == 40
    assert sum(row["exposed_users"] for row in rows.values()) == sum(row["impressions"] for row in rows.values()) == 40
    assert rows["als"]["clicks"] == 1
    # The event log's own path, without the API.
    direct = EventLog(lambda: store, KEYS)
    assert direct.record([]) == 0 and direct.report("ranking")["experiment"] == "ranking"


def test_retention_removes_old_runs_from_every_node_and_rollback_steps_back(cluster, store):
    for index, tag in enumerate("abcde"):
        publish_lists(store, RUN_IDS[index], tag)
    retained = [RUN_IDS[4], RUN_IDS[3]]
    assert known_runs(store, KEYS) == retained and current_run(store, KEYS) == RUN_IDS[4]
    per_run = {run_id: cluster.keys_per_node(KEYS.run_pattern(run_id)) for run_id in RUN_IDS[:5]}
    log.info("keys per node after 5 publishes with keep_runs 2: %s", per_run)
    for run_id in RUN_IDS[:3]:
        assert set(per_run[run_id].values()) == {0}, f"run {run_id} removed from every node: {per_run[run_id]}"
    for run_id in retained:
        assert all(user_keys_per_node(cluster, run_id).values()), "a run's user keys are on every master"
        assert sum(per_run[run_id].values()) == USERS + 4, "user lists, popular list, catalogue, cold items, meta"

    assert admin.roll_back(store, KEYS, POLICY) == {"rolled_back_from": RUN_IDS[4], "current": RUN_IDS[3]}
    with pytest.raises(PublishRefused, match="no retained run older"):
        admin.roll_back(store, KEYS, POLICY)
    again = publish_lists(store, RUN_IDS[4], "e", rollback=True)
    assert again["reused"] is True and current_run(store, KEYS) == RUN_IDS[4]
    with pytest.raises(PublishRefused, match="older than the current run"):
        publish_lists(store, RUN_IDS[0], "a")
    assert known_runs(store, KEYS) == retained


def test_a_pointer_switch_under_load_serves_whole_runs_only(api, store):
    tags = dict(zip(RUN_IDS[:4], "abcd", strict=True))
    expected = {run_id: tagged_lists(tag, USERS, PER_USER) for run_id, tag in tags.items()}
    popular = {run_id: [item for item, _ in popular_of(tag)[:5]] for run_id, tag in tags.items()}
    publish_lists(store, RUN_IDS[0], "a")
    answers, problems, stopping, during_publishes = [], [], threading.Event(), 0

    def read_in_a_loop():
        reads = 0
        while not stopping.is_set():
            user = f"user_{reads % USERS:04d}"
            path = f"/v1/recommendations/{user}?n=5" if reads % 4 else "/v1/popular?n=5"
            reads += 1
            response = api.get(path)
            body = response.get_json()
            if response.status_code != 200:
                problems.append((path, response.status_code, body))
                continue
            items = [item["item_id"] for item in body["items"]]
            if "recommendations" in path:
                whole = body["source"] == "personalized" and items == [i for i, _ in expected[body["run_id"]][user]]
            else:
                whole = items == popular[body["run_id"]]
            answers.append(body["run_id"])
            if not whole:
                problems.append((path, body))

    reader = threading.Thread(target=read_in_a_loop, name="cluster-reader")
    reader.start()
    try:
        for run_id in RUN_IDS[1:4]:
            before = len(answers)
            publish_lists(store, run_id, tags[run_id], pause=0.02)
            during_publishes += len(answers) - before
            # Wait until the API serves the new run, so retention never removes a run a reader holds.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (len(answers) == before or answers[-1] != run_id):
                time.sleep(0.01)
    finally:
        stopping.set()
        reader.join(timeout=30)
    seen = {run_id: answers.count(run_id) for run_id in tags}
    log.info("pointer switch under load: %d reads %s, %d during the 3 publishes, %d problems",
             len(answers), seen, during_publishes, len(problems))  # fmt: skip
    assert problems == [], problems[:5]
    assert during_publishes > 0
    assert all(seen.values()), f"every run was served: {seen}"


# redis-py methods of commands that can take several keys.
MULTI_KEY_METHODS = frozenset(
    "mget mset msetnx delete unlink exists touch rename renamenx copy smove sunion sunionstore sinter sinterstore "
    "sdiff sdiffstore zunion zunionstore zinter zinterstore zdiff zdiffstore zrangestore pfcount pfmerge rpoplpush "
    "brpoplpush lmove blmove blpop brpop bzpopmin bzpopmax lmpop zmpop xread xreadgroup bitop watch transaction "
    "eval evalsha eval_ro evalsha_ro fcall fcall_ro register_script".split()
)
# Reviewed call sites that pass several keys: each script's keys share one hash tag
# (test_hash_tags_keep_control_and_event_keys_in_one_slot_each; docs/store-contract.md, Redis Cluster).
# clear_lock's compare-and-delete script touches the lock key alone.
SAME_SLOT_CALLS = {
    ("store/writer.py", "promote", "eval"),
    ("store/events.py", "record", "eval"),
    ("store/admin.py", "clear_lock", "eval"),
}


def redis_calls(path: Path):
    """(function, method, call) for every method call in a module, with the function it is in."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
                found.append((name, child.func.attr, child))
            visit(child, name)

    visit(ast.parse(path.read_text("utf-8")), "<module>")
    return found


def test_multi_key_commands_are_per_key_or_share_a_hash_tag():
    multi_key, pipelines = set(), []
    for path in sorted([*(ROOT / "store").glob("*.py"), *(ROOT / "serving").glob("*.py")]):
        module = path.relative_to(ROOT).as_posix()
        for function, method, call in redis_calls(path):
            if method == "pipeline":
                transaction = {k.arg: k.value for k in call.keywords}.get("transaction")
                pipelines.append((module, function, isinstance(transaction, ast.Constant) and transaction.value))
            elif method in MULTI_KEY_METHODS:
                several = len(call.args) > 1 or any(isinstance(arg, ast.Starred) for arg in call.args)
                if several:
                    multi_key.add((module, function, method))
    assert multi_key == SAME_SLOT_CALLS, "a new multi-key call: give its keys one hash tag, or issue it per key"
    assert pipelines and all(transaction is False for *_, transaction in pipelines), (
        f"pipelines without transaction=False need every key in one slot on a cluster: {pipelines}"
    )
