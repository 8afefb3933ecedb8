"""The API's own events in its log (serving/api_log.py): JSON lines about 5xx answers, fallback
answers and Redis outages, rate limited, with no secrets, through the real app and a real
redis-server."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time

import pytest
import redis
from store_seeding import seed_run

from serving import create_app
from serving.api_log import (
    API_LOGGERS,
    HANDLER_NAME,
    RateLimitedJsonHandler,
    RateLimiter,
    remove_api_log,
)
from store.contract import KeyLayout

RUN = "2026-11-29_20261129T020000000Z"
USERS = {f"user_{k:02d}": [(f"i{k}", 0.9), (f"i{k + 1}", 0.8)] for k in range(50)}
POPULAR = [(f"p{k}", float(100 - k)) for k in range(30)]
CORE_FIELDS = {"ts", "level", "logger", "event", "message", "pid"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PASSWORD = "s3cret-Pa55word-for-the-log-test"


def settings(redis_url: str, tmp_path, log_file, **api) -> dict:
    """create_app overrides: this Redis, a fast pointer refresh, a private fallback file and log."""
    api = {"pointer_refresh_seconds": 0.05, "fallback_file": str(tmp_path / "fallback.json"),
           "log_file": None if log_file is None else str(log_file), "log_burst": 5, **api}  # fmt: skip
    return {"store": {"url": redis_url}, "api": api}


def read_lines(path) -> list[dict]:
    """Every line of the log as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def events(lines: list[dict], event: str) -> list[dict]:
    return [line for line in lines if line["event"] == event]


def assert_well_formed(lines: list[dict]) -> None:
    for line in lines:
        assert CORE_FIELDS <= set(line), line
        assert TIMESTAMP.match(line["ts"]), line["ts"]
        assert line["pid"] == os.getpid()
        assert len(line["message"]) <= 500


@pytest.fixture(autouse=True)
def _no_handler_left_behind():
    yield
    remove_api_log()


def test_an_outage_during_1000_lookups_writes_a_bounded_number_of_lines(own_redis, tmp_path):
    seed_run(redis.Redis.from_url(own_redis.url), RUN, USERS, POPULAR)
    log_file = tmp_path / "api.log"
    app = create_app(settings(own_redis.url, tmp_path, log_file))
    client = app.test_client()
    try:
        assert client.get("/v1/recommendations/user_00").get_json()["source"] == "personalized"
        own_redis.stop()
        deadline = time.monotonic() + 60
        sources = []
        for k in range(1000):
            sources.append(client.get(f"/v1/recommendations/user_{k % 50:02d}").get_json()["source"])
            assert time.monotonic() < deadline, f"only {k} lookups within 60 s"
        assert sources == ["fallback"] * 1000
        own_redis.start()
        assert client.get("/readyz").status_code == 200  # a real round trip: the outage is over
    finally:
        app.extensions["recs_store"].close()
    remove_api_log()  # as at shutdown: writes what the rate limit still holds back

    lines = read_lines(log_file)
    assert len(lines) <= 20, [line["event"] for line in lines]
    assert_well_formed(lines)
    (started,) = events(lines, "redis_outage_started")
    assert started["reason"] == "redis_unreachable" and started["error_type"] == "ConnectionError"
    (ended,) = events(lines, "redis_outage_ended")
    assert ended["failed_calls"] >= 1 and ended["outage_seconds"] > 0
    assert lines.index(started) < lines.index(ended)
    fallbacks = events(lines, "fallback_answer")
    assert len(fallbacks) == 5
    for line in fallbacks:
        assert line["reason"] == "outage" and line["status"] == 200 and line["method"] == "GET"
        assert line["path"].startswith("/v1/recommendations/user_") and line["run_id"] == RUN
        assert isinstance(line["duration_ms"], float)
    (summary,) = [line for line in events(lines, "log_suppressed") if line["suppressed_event"] == "fallback_answer"]
    assert summary["reason"] == "outage" and summary["suppressed"] == 1000 - len(fallbacks)


def test_a_worker_started_during_an_outage_logs_fallback_file_answers(own_redis, tmp_path):
    seed_run(redis.Redis.from_url(own_redis.url), RUN, USERS, POPULAR)
    log_file = tmp_path / "api.log"
    first = create_app(settings(own_redis.url, tmp_path, log_file))
    assert first.test_client().get("/v1/recommendations/user_01").get_json()["source"] == "personalized"
    first.extensions["recs_store"].close()
    own_redis.stop()
    late = create_app(settings(own_redis.url, tmp_path, log_file))
    try:
        assert late.test_client().get("/v1/recommendations/user_01").get_json()["source"] == "fallback"
    finally:
        late.extensions["recs_store"].close()
    remove_api_log()
    (line,) = events(read_lines(log_file), "fallback_answer")
    assert line["reason"] == "fallback_file" and line["run_id"] == RUN


def test_answers_after_redis_lost_its_current_run_are_logged_as_lost_run(redis_server, redis_client, tmp_path):
    seed_run(redis_client, RUN, USERS, POPULAR)
    log_file = tmp_path / "api.log"
    app = create_app(settings(redis_server.url, tmp_path, log_file))
    client = app.test_client()
    try:
        assert client.get("/v1/recommendations/user_02").get_json()["source"] == "personalized"
        redis_client.flushdb()  # as a Redis that restarted empty
        deadline = time.monotonic() + 5
        while client.get("/v1/recommendations/user_02").get_json()["source"] != "fallback":
            assert time.monotonic() < deadline, "the lost run was not noticed within 5 s"
            time.sleep(0.05)
        ready = client.get("/readyz")
    finally:
        app.extensions["recs_store"].close()
    remove_api_log()
    lines = read_lines(log_file)
    fallbacks = events(lines, "fallback_answer")
    assert fallbacks and {line["reason"] for line in fallbacks} == {"lost_run"}
    assert ready.status_code == 503 and events(lines, "not_ready")[-1]["reason"] == ready.get_json()["reason"]
    assert not events(lines, "redis_outage_started")


def test_a_store_data_error_is_one_line_and_a_json_answer_and_a_400_no_line(redis_server, redis_client, tmp_path):
    seed_run(redis_client, RUN, USERS, POPULAR)
    redis_client.set(KeyLayout("recs").user_recs(RUN, "default", "user_03"), b"\x80not json")
    log_file = tmp_path / "api.log"
    app = create_app(settings(redis_server.url, tmp_path, log_file))
    try:
        client = app.test_client()
        response = client.get("/v1/recommendations/user_03")
        assert client.get("/v1/recommendations/user_04?n=zero").status_code == 400
    finally:
        app.extensions["recs_store"].close()
    assert response.status_code == 500
    assert response.get_json() == {"error": "store_data_error", "detail": "stored data is invalid"}
    assert b"Traceback" not in response.data
    remove_api_log()
    text = log_file.read_text("utf-8")
    lines = read_lines(log_file)
    assert_well_formed(lines)
    (line,) = events(lines, "store_data_error")
    assert line["level"] == "ERROR" and line["logger"] == "recs.api" and line["status"] == 500
    assert line["path"] == "/v1/recommendations/user_03" and line["method"] == "GET"
    assert line["error_type"] == "StoreDataError" and 0 < len(line["error"]) <= 500
    assert "Traceback" not in text
    assert not [line for line in lines if line.get("status") == 400]


def test_no_line_holds_the_redis_password(own_redis, tmp_path):
    plain = redis.Redis.from_url(own_redis.url)
    seed_run(plain, RUN, USERS, POPULAR)
    plain.config_set("requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{own_redis.port}/0"
    log_file = tmp_path / "api.log"
    app = create_app(settings(url, tmp_path, log_file, fallback_file=None))
    try:
        client = app.test_client()
        assert client.get("/v1/recommendations/user_05").get_json()["source"] == "personalized"
        # Any API logger's line that names the URL gets it masked.
        logging.getLogger("recs.reader").warning("could not reach %s", url)
        own_redis.stop()
        assert client.get("/v1/recommendations/user_05").get_json()["source"] == "fallback"
        assert client.get("/readyz").status_code == 503
    finally:
        app.extensions["recs_store"].close()
    remove_api_log()
    text = log_file.read_text("utf-8")
    lines = read_lines(log_file)
    assert PASSWORD not in text
    masked = f"redis://:***@127.0.0.1:{own_redis.port}/0"
    assert events(lines, "api_started")[0]["store"] == masked
    assert f"could not reach {masked}" in [line["message"] for line in lines]
    assert events(lines, "redis_outage_started") and events(lines, "not_ready")[0]["status"] == 503


def test_creating_the_app_twice_does_not_double_lines(redis_server, redis_client, tmp_path):
    first_file, second_file = tmp_path / "first.log", tmp_path / "second.log"
    apps = [create_app(settings(redis_server.url, tmp_path, first_file)) for _ in range(2)]
    try:
        assert all(sum(h.get_name() == HANDLER_NAME for h in logging.getLogger(name).handlers) == 1
                   for name in API_LOGGERS)  # fmt: skip
        assert apps[1].test_client().get("/v1/popular").status_code == 503  # nothing published yet
        assert len(events(read_lines(first_file), "no_published_run")) == 1
        # Other settings replace the handler: the next lines go to the new file only.
        third = create_app(settings(redis_server.url, tmp_path, second_file))
        apps.append(third)
        assert third.test_client().get("/v1/popular").status_code == 503
    finally:
        for app in apps:
            app.extensions["recs_store"].close()
    remove_api_log()
    assert len(events(read_lines(first_file), "no_published_run")) == 1
    assert len(events(read_lines(second_file), "no_published_run")) == 1


def test_without_a_log_file_lines_go_to_stderr(redis_server, redis_client, tmp_path, capsys):
    app = create_app(settings(redis_server.url, tmp_path, None))
    try:
        assert app.test_client().get("/v1/recommendations/user_06").status_code == 503
    finally:
        app.extensions["recs_store"].close()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert_well_formed(lines)
    (line,) = events(lines, "no_published_run")
    assert line["status"] == 503 and line["path"] == "/v1/recommendations/user_06"


def test_held_back_lines_are_counted_when_their_window_ends():
    now = [0.0]
    out = io.StringIO()
    handler = RateLimitedJsonHandler(logging.StreamHandler(out), RateLimiter(3, 10.0, clock=lambda: now[0]), ())
    logger = logging.getLogger("recs.tests.api_log")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for _ in range(7):
            logger.warning("busy", extra={"event": "fallback_answer", "fields": {"reason": "outage"}})
        now[0] = 10.0
        logger.warning("other", extra={"event": "store_data_error"})  # any next line reports the window that ended
        for _ in range(2):
            logger.warning("busy", extra={"event": "fallback_answer", "fields": {"reason": "outage"}})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["fallback_answer"] * 3 + ["log_suppressed", "store_data_error"] + [
        "fallback_answer"
    ] * 2
    assert lines[3]["suppressed"] == 4 and lines[3]["suppressed_event"] == "fallback_answer"
    assert lines[3]["reason"] == "outage" and lines[3]["message"].startswith("suppressed 4 similar events")
    handler.close()
    assert out.getvalue().count("log_suppressed") == 1  # nothing more was held back
