"""The fast path (serving/fast_path.py) answers plain lookups exactly as the Flask view does,
and hands everything else to Flask."""

from __future__ import annotations

import pytest
from store_seeding import seed_run

from serving import create_app
from serving.api_log import remove_api_log
from serving.routes import RECOMMENDATIONS_RULE
from store.contract import KeyLayout

RUN = "2026-11-28_20261128T020000000Z"
USERS = {f"user_{u:03d}": [(f"item_{(u + k) % 50:02d}", round(1 - k / 40, 4)) for k in range(30)] for u in range(20)}
USERS["ünïcode"] = [("item_01", 0.5)]
CONTEXT = {"user_001": (["p1", "p2"], ["Drama"])}
POPULAR = [(f"p{k}", float(100 - k)) for k in range(30)]
EXPERIMENT = {"name": "ranking", "salt": "s1", "control": "als", "shares": {"als": 0.5, "pop": 0.5}}


def make_app(redis_url: str, tmp_path, fast_path: bool):
    """An app on this Redis, with the fast path on or off, that counts what reaches Flask."""
    api = {"pointer_refresh_seconds": 0.05, "default_n": 3, "max_n": 20, "fallback_file": None,
           "fast_path": fast_path}  # fmt: skip
    app = create_app({"store": {"url": redis_url}, "api": api})
    app.config["reached_flask"] = 0

    @app.before_request
    def _count():
        app.config["reached_flask"] += 1

    return app


@pytest.fixture
def two_apps(redis_server, redis_client, tmp_path):
    variant_lists = {"als": USERS, "pop": {user: list(reversed(items)) for user, items in USERS.items()}}
    seed_run(redis_client, RUN, {}, POPULAR, experiment=EXPERIMENT, variant_lists=variant_lists, context=CONTEXT)
    fast, flask_only = (make_app(redis_server.url, tmp_path, on) for on in (True, False))
    for app in (fast, flask_only):
        app.test_client().get("/v1/recommendations/user_000")  # loads the run into the reader
    yield fast, flask_only
    for app in (fast, flask_only):
        app.extensions["recs_store"].close()
    remove_api_log()


def comparable(response) -> tuple:
    """Status, content type and body, with the rec_id's random nonce left out."""
    body = response.get_json()
    if isinstance(body, dict) and "rec_id" in body:
        body = {**body, "rec_id": body["rec_id"].rsplit("~", 1)[0]}
    return response.status_code, response.mimetype, body


PLAIN = ["/v1/recommendations/user_001", "/v1/recommendations/user_002?n=7", "/v1/recommendations/user_003?n=20",
         "/v1/recommendations/new-user?n=5", "/v1/recommendations/%C3%BCn%C3%AFcode?n=1"]  # fmt: skip
HANDED_ON = [
    "/v1/recommendations/user_001?n=0", "/v1/recommendations/user_001?n=21", "/v1/recommendations/user_001?n=5%0A",
    "/v1/recommendations/user_001?n=abc", "/v1/recommendations/user_001?n=3&category=Drama",
    "/v1/recommendations/user_001?variant=pop", "/v1/recommendations/user_001?exclude=item_01",
    "/v1/recommendations/" + "x" * 300, "/v1/recommendations/", "/v1/popular?n=3", "/healthz",
]  # fmt: skip


@pytest.mark.parametrize("path", PLAIN)
def test_plain_lookups_are_answered_without_flask_and_alike(two_apps, path):
    fast, flask_only = two_apps
    before = fast.config["reached_flask"]
    assert comparable(fast.test_client().get(path)) == comparable(flask_only.test_client().get(path))
    assert fast.config["reached_flask"] == before, "the fast path should have answered"


@pytest.mark.parametrize("path", HANDED_ON)
def test_everything_else_reaches_flask_and_gets_the_same_answer(two_apps, path):
    fast, flask_only = two_apps
    before = fast.config["reached_flask"]
    assert comparable(fast.test_client().get(path)) == comparable(flask_only.test_client().get(path))
    assert fast.config["reached_flask"] == before + 1


def test_a_post_to_the_lookup_route_gets_flasks_405(two_apps):
    fast, _ = two_apps
    response = fast.test_client().post("/v1/recommendations/user_001")
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


def personalized_counts(client) -> tuple[float, float]:
    """The lookup route's personalized answers and latency observations, from /metrics."""
    text = client.get("/metrics").get_data(as_text=True)
    rows = dict(row.rsplit(" ", 1) for row in text.splitlines() if row[:1] != "#")
    labels = f'{{endpoint="{RECOMMENDATIONS_RULE}",source="personalized"}}'
    answers, timed = rows.get(f"recs_answers_total{labels}", 0), rows.get(f"recs_request_seconds_count{labels}", 0)
    return float(answers), float(timed)


def test_fast_answers_are_counted_in_the_metrics_like_flasks(two_apps):
    fast, _ = two_apps
    client = fast.test_client()
    answers, timed = personalized_counts(client)
    before = fast.config["reached_flask"]
    for _ in range(3):
        client.get("/v1/recommendations/user_004?n=4")
    assert fast.config["reached_flask"] == before, "the fast path answered the lookups"
    assert personalized_counts(client) == (answers + 3, timed + 3)


def test_a_corrupt_list_is_handed_to_flask_and_gets_its_json_error(two_apps, redis_client):
    fast, flask_only = two_apps
    variant = fast.test_client().get("/v1/recommendations/user_005").get_json()["variant"]
    redis_client.set(KeyLayout().user_recs(RUN, variant, "user_005"), b"not json")
    response = fast.test_client().get("/v1/recommendations/user_005")
    assert comparable(response) == comparable(flask_only.test_client().get("/v1/recommendations/user_005"))
    assert response.status_code == 500 and response.get_json()["error"] == "store_data_error"


def test_during_an_outage_the_fallback_comes_from_flask(two_apps, redis_server):
    fast, _ = two_apps
    redis_server.stop()
    try:
        before = fast.config["reached_flask"]
        response = fast.test_client().get("/v1/recommendations/user_006?n=2")
        assert response.status_code == 200 and response.get_json()["source"] == "fallback"
        assert fast.config["reached_flask"] == before + 1
    finally:
        redis_server.start()
