"""The API as a real server process (granian): readers hammering it while runs are published, and
Redis stopped, and frozen, under it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest
import requests
from responses import NO_EXPERIMENT, without_rec_id
from store_seeding import seed_run, write_run_folder

from conf import with_overrides
from jobs import publish
from tools.processes import ApiServer

pytestmark = pytest.mark.slow

RUNS = [(f"2026-11-{day}", f"2026-11-{day}_202611{day}T020000000Z", f"t{day}") for day in (24, 25, 26, 27)]
TAG_OF = {run_id: tag for _, run_id, tag in RUNS}


class Reader(threading.Thread):
    """Requests in a loop and records every answer: status, run id and whether it mixed runs."""

    def __init__(self, base_url: str, paths: list[str]):
        super().__init__(daemon=True)
        self.base_url, self.paths = base_url, paths
        self.stopping = threading.Event()
        self.seen_runs: Counter = Counter()
        self.problems: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            for path in self.paths:
                try:
                    response = session.get(self.base_url + path, timeout=5)
                except requests.RequestException as exc:
                    self.problems.append(f"{path}: {exc}")
                    continue
                self.check(path, response)

    def check(self, path: str, response) -> None:
        if response.status_code != 200:
            self.problems.append(f"{path}: HTTP {response.status_code} {response.text[:200]}")
            return
        body = response.json()
        tag = TAG_OF.get(body["run_id"])
        self.seen_runs[body["run_id"]] += 1
        if tag is None or not body["items"] or not all(item["item_id"].startswith(f"{tag}-") for item in body["items"]):
            self.problems.append(f"{path}: items not all from run {body['run_id']}: {body['items'][:3]}")


def test_readers_see_only_whole_runs_while_runs_are_published(spark, base_config, redis_server, redis_client, tmp_path):
    overrides = {
        "paths": {"runs_root": str(tmp_path / "runs")},
        "store": {"url": redis_server.url},
        "publish": {"keep_runs": 2, "batch_size": 50},
    }
    cfg = with_overrides(base_config, overrides)
    layouts = [write_run_folder(spark, cfg.paths.runs_root, d, r, t, users=400) for d, r, t in RUNS]
    publish.run(spark, cfg, layouts[0])
    server = ApiServer(
        redis_server.url, tmp_path / "api.log", api={"pointer_refresh_seconds": 0.2, "workers": 2, "threads": 4}
    )
    server.start()
    paths = ["/v1/recommendations/user_0042", "/v1/recommendations/user_0399", "/v1/recommendations/stranger",
             "/v1/popular?n=5", "/v1/popular?category=Drama"]  # fmt: skip
    readers = [Reader(server.url, paths) for _ in range(3)]
    try:
        for reader in readers:
            reader.start()
        for layout in layouts[1:]:
            publish.run(spark, cfg, layout)
        last = RUNS[-1][1]
        deadline = time.monotonic() + 3
        while requests.get(f"{server.url}/v1/recommendations/user_0042", timeout=5).json()["run_id"] != last:
            assert time.monotonic() < deadline, "the last run was not served within 3 s of its publish"
            time.sleep(0.05)
    finally:
        for reader in readers:
            reader.stopping.set()
        for reader in readers:
            reader.join(timeout=10)
        server.stop()
    problems = [problem for reader in readers for problem in reader.problems]
    seen = sum((reader.seen_runs for reader in readers), Counter())
    assert problems == [], problems[:5]
    assert sum(seen.values()) > 200, seen
    assert set(seen) <= set(TAG_OF) and len(seen) >= 3, seen


def wait_for(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


def test_redis_outage_answers_from_fallback_and_recovers(own_redis, tmp_path):
    import redis

    run_id = RUNS[0][1]
    client = redis.Redis.from_url(own_redis.url)
    seed_run(client, run_id, {"known": [("t24-item-1", 0.9)]}, [("t24-pop-1", 5.0), ("t24-pop-2", 4.0)])
    client.close()
    api = {"pointer_refresh_seconds": 0.2, "retry_after_seconds": 0.5, "workers": 1, "threads": 4}
    server = ApiServer(own_redis.url, tmp_path / "api.log", api=api, store={"reader_timeout_seconds": 0.2})
    server.start()
    user_url, ready_url = f"{server.url}/v1/recommendations/known", f"{server.url}/readyz"
    try:
        assert requests.get(user_url, timeout=5).json()["source"] == "personalized"
        assert requests.get(ready_url, timeout=5).status_code == 200

        own_redis.stop()
        for _ in range(20):
            started = time.monotonic()
            response = requests.get(user_url, timeout=5)
            assert time.monotonic() - started < 1.0
            assert response.status_code == 200
            items = [
                {"item_id": "t24-pop-1", "score": 5.0, "rank": 1, "source": "fallback"},
                {"item_id": "t24-pop-2", "score": 4.0, "rank": 2, "source": "fallback"},
            ]
            expected = {"user_id": "known", "run_id": run_id, "source": "fallback", **NO_EXPERIMENT, "items": items}
            assert without_rec_id(response.json()) == expected
        ready = requests.get(ready_url, timeout=5)
        assert ready.status_code == 503 and ready.json() == {"ready": False, "reason": "redis_unreachable"}

        own_redis.start()
        wait_for(lambda: requests.get(ready_url, timeout=5).status_code == 200, 5, "readiness after Redis returned")
        wait_for(lambda: requests.get(user_url, timeout=5).json()["source"] == "personalized", 3, "personalized again")

        os.kill(own_redis.process.pid, signal.SIGSTOP)  # Redis hangs: connections open, no answers
        started = time.monotonic()
        frozen = requests.get(user_url, timeout=5)
        assert frozen.status_code == 200 and frozen.json()["source"] == "fallback"
        assert time.monotonic() - started < 2.0
        os.kill(own_redis.process.pid, signal.SIGCONT)
        wait_for(
            lambda: requests.get(user_url, timeout=5).json()["source"] == "personalized", 5, "recovery from a hang"
        )
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / "api.log").read_text()


def test_unavailable_mode_answers_503_json_when_redis_is_down(own_redis, tmp_path):
    import redis

    client = redis.Redis.from_url(own_redis.url)
    seed_run(client, RUNS[0][1], {"known": [("t24-item-1", 0.9)]}, [("t24-pop-1", 5.0)])
    client.close()
    server = ApiServer(own_redis.url, tmp_path / "api.log", api={"down_mode": "unavailable", "workers": 1})
    server.start()
    try:
        assert requests.get(f"{server.url}/v1/recommendations/known", timeout=5).status_code == 200
        own_redis.stop()
        response = requests.get(f"{server.url}/v1/recommendations/known", timeout=5)
        assert response.status_code == 503
        assert response.json() == {"error": "store_unavailable",
                                   "detail": "the recommendation store is unavailable; try again shortly"}  # fmt: skip
    finally:
        server.stop()


def test_accepted_events_survive_an_api_restart_and_a_redis_restart(own_redis, tmp_path):
    import redis

    from store.contract import KeyLayout

    client = redis.Redis.from_url(own_redis.url)
    shares = {"als": 0.5, "popular": 0.5}
    lists = {v: {f"u{i}": [(f"{v}-item", 1.0)] for i in range(20)} for v in shares}
    seed_run(client, RUNS[0][1], {}, [("t24-pop-1", 5.0)], variant_lists=lists,
             experiment={"name": "ranking", "salt": "s", "control": "als", "shares": shares})  # fmt: skip
    events = [{"user_id": f"u{i}", "item_id": f"t24-item-{i}", "type": kind} for i in range(20)
              for kind in ("impression", "click")]  # fmt: skip
    server = ApiServer(own_redis.url, tmp_path / "api.log", api={"workers": 2, "threads": 2})
    server.start()
    try:
        for start in range(0, len(events), 8):
            response = requests.post(f"{server.url}/v1/events", json=events[start : start + 8], timeout=5)
            assert response.status_code == 202 and response.json()["accepted"] == len(events[start : start + 8])
        before = requests.get(f"{server.url}/v1/experiments/ranking", timeout=5).json()
    finally:
        server.stop()
    own_redis.stop()  # Redis with appendonly yes, appendfsync always (the durability the README asks for)
    own_redis.start()
    server = ApiServer(own_redis.url, tmp_path / "api-again.log", api={"workers": 1})
    server.start()
    try:
        after = requests.get(f"{server.url}/v1/experiments/ranking", timeout=5).json()
    finally:
        server.stop()
    assert after == before
    assert sum(row["impressions"] for row in after["variants"]) == 20
    assert sum(row["clicks"] for row in after["variants"]) == 20
    assert redis.Redis.from_url(own_redis.url).xlen(KeyLayout("recs").events_stream) == 40


def metric_samples(text: str) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, parsed by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}  # fmt: skip


def test_metrics_sum_every_workers_counts(redis_server, redis_client, tmp_path):
    popular = [(f"t24-pop-{k}", 5.0 - k) for k in range(3)]
    seed_run(redis_client, RUNS[0][1], {f"u{i}": [("t24-item-1", 0.9)] for i in range(50)}, popular)
    server = ApiServer(redis_server.url, tmp_path / "api.log", api={"workers": 2, "threads": 2})
    server.start()
    lookups = "/v1/recommendations/<any_text:user_id>"
    try:
        # Scrapes before any lookup: a worker that has served nothing yet still names the run.
        first = [metric_samples(requests.get(f"{server.url}/metrics", timeout=5).text) for _ in range(4)]
        for i in range(40):  # a new connection each time, so both workers answer
            assert requests.get(f"{server.url}/v1/recommendations/u{i}?n=1", timeout=5).status_code == 200
        for i in range(15):
            assert requests.get(f"{server.url}/v1/recommendations/stranger{i}?n=2", timeout=5).status_code == 200
        for _ in range(7):
            assert requests.get(f"{server.url}/v1/recommendations/u1?n=0", timeout=5).status_code == 400
        scrapes = [metric_samples(requests.get(f"{server.url}/metrics", timeout=5).text) for _ in range(4)]
        worker_files = sorted(path.name for path in (tmp_path / "api.metrics").glob("counter_*.db"))
    finally:
        server.stop()
    assert len(worker_files) == 2, f"both workers counted requests: {worker_files}"
    for samples in first:
        assert samples[("recs_run_info", (("from_fallback_file", "False"), ("run_id", RUNS[0][1])))] == 1
    for samples in scrapes:  # whichever worker answered, the sums are the same
        answers = {labels: value for (name, labels), value in samples.items() if name == "recs_answers_total"}
        assert answers[(("endpoint", lookups), ("source", "personalized"))] == 40
        assert answers[(("endpoint", lookups), ("source", "popular"))] == 15
        histogram = ("recs_request_seconds_count", (("endpoint", lookups), ("source", "personalized")))
        assert samples[histogram] == 40
        assert samples[("recs_items_served_total", (("source", "personalized"),))] == 40
        assert samples[("recs_items_served_total", (("source", "popular"),))] == 30
        assert samples[("recs_errors_total", (("status", "400"),))] == 7
        assert samples[("recs_run_info", (("from_fallback_file", "False"), ("run_id", RUNS[0][1])))] == 1
        assert samples[("recs_run_age_seconds", ())] > 0
        assert samples[("recs_redis_seconds_count", ())] >= 55
