"""The lookup API through Flask's test client, against a real redis-server. Every response is
checked against the checked-in OpenAPI document."""

from __future__ import annotations

import time

import pytest
from responses import NO_EXPERIMENT, OPENAPI, assert_matches_openapi, without_rec_id
from store_seeding import seed_run

from serving import create_app
from store.contract import KeyLayout

RUN_A, RUN_B = "2026-11-28_20261128T020000000Z", "2026-11-29_20261129T020000000Z"
USERS = {"alice": [("i1", 0.9), ("i2", 0.8), ("i3", 0.7)], "bob/with slash": [("i9", 0.5)], "ünïcode": [("i4", 0.4)]}
POPULAR = [(f"p{k}", float(100 - k)) for k in range(30)]
CATEGORIES = {"Drama": [("d1", 9.0), ("d2", 8.0)]}


def settings(redis_url: str, tmp_path, key_prefix: str = "recs", **api) -> dict:
    """create_app overrides: this Redis, a fast pointer refresh, small n, a private fallback file."""
    api = {"pointer_refresh_seconds": 0.05, "default_n": 2, "max_n": 20,
           "fallback_file": str(tmp_path / "fallback.json"), **api}  # fmt: skip
    return {"store": {"url": redis_url, "key_prefix": key_prefix}, "api": api}


@pytest.fixture
def app_config(redis_server, tmp_path):
    return settings(redis_server.url, tmp_path)


@pytest.fixture
def seeded(redis_client):
    seed_run(redis_client, RUN_A, USERS, POPULAR, CATEGORIES)


def test_openapi_document_is_valid_and_served(client):
    from openapi_spec_validator import validate

    validate(OPENAPI)
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.get_json() == OPENAPI


def test_known_user_gets_personalized_list(client, seeded):
    response = client.get("/v1/recommendations/alice?n=3")
    assert response.status_code == 200
    assert without_rec_id(response.get_json()) == {
        "user_id": "alice",
        "run_id": RUN_A,
        "source": "personalized",
        **NO_EXPERIMENT,
        "items": [{"item_id": "i1", "score": 0.9, "rank": 1, "source": "personalized"},
                  {"item_id": "i2", "score": 0.8, "rank": 2, "source": "personalized"},
                  {"item_id": "i3", "score": 0.7, "rank": 3, "source": "personalized"}],
    }  # fmt: skip
    assert_matches_openapi(response, "/v1/recommendations/{user_id}")


@pytest.mark.parametrize(("user", "path"), [("bob/with slash", "bob/with%20slash"), ("ünïcode", "%C3%BCn%C3%AFcode")])
def test_ids_with_slashes_spaces_and_unicode(client, seeded, user, path):
    body = client.get(f"/v1/recommendations/{path}?n=1").get_json()
    assert body["user_id"] == user and body["source"] == "personalized"
    assert [item["item_id"] for item in body["items"]] == [item for item, _ in USERS[user]]


def test_ids_are_compared_without_surrounding_spaces(client, seeded):
    body = client.get("/v1/recommendations/%20alice%20").get_json()
    assert body["user_id"] == "alice" and body["source"] == "personalized"
    blank = client.get("/v1/recommendations/%20%20")
    assert blank.status_code == 400 and blank.get_json()["detail"] == "user_id must not be empty"


def test_unknown_user_gets_the_popular_list(client, seeded):
    response = client.get("/v1/recommendations/nobody")
    assert without_rec_id(response.get_json()) == {
        "user_id": "nobody",
        "run_id": RUN_A,
        "source": "popular",
        **NO_EXPERIMENT,
        "items": [{"item_id": "p0", "score": 100.0, "rank": 1, "source": "popular"},
                  {"item_id": "p1", "score": 99.0, "rank": 2, "source": "popular"}],
    }  # fmt: skip
    assert_matches_openapi(response, "/v1/recommendations/{user_id}")


def test_n_defaults_from_config_and_a_short_list_is_filled_from_the_popular_items(client, seeded):
    assert len(client.get("/v1/recommendations/alice").get_json()["items"]) == 2
    items = client.get("/v1/recommendations/alice?n=20").get_json()["items"]
    assert [(item["item_id"], item["source"]) for item in items[:4]] == [
        ("i1", "personalized"), ("i2", "personalized"), ("i3", "personalized"), ("p0", "popular")
    ]  # fmt: skip
    assert len(items) == 20 and [item["rank"] for item in items] == list(range(1, 21))


def test_popular_overall_and_per_category(client, seeded):
    overall = client.get("/v1/popular?n=4")
    assert [item["item_id"] for item in overall.get_json()["items"]] == ["p0", "p1", "p2", "p3"]
    assert overall.get_json()["category"] is None
    assert_matches_openapi(overall, "/v1/popular")
    drama = client.get("/v1/popular?category=Drama")
    assert drama.get_json() == {
        "run_id": RUN_A,
        "source": "popular",
        "category": "Drama",
        "items": [{"item_id": "d1", "score": 9.0, "rank": 1}, {"item_id": "d2", "score": 8.0, "rank": 2}],
    }
    missing = client.get("/v1/popular?category=Opera")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    assert_matches_openapi(missing, "/v1/popular")


BAD_REQUESTS = [
    ("/v1/recommendations/alice?n=abc", "n must be a whole number"),
    ("/v1/recommendations/alice?n=", "n must be a whole number"),
    ("/v1/recommendations/alice?n=1.5", "n must be a whole number"),
    ("/v1/recommendations/alice?n=-1", "n must be a whole number"),
    ("/v1/recommendations/alice?n=1e3", "n must be a whole number"),
    ("/v1/recommendations/alice?n=%201", "n must be a whole number"),
    ("/v1/recommendations/alice?n=5%0A", "n must be a whole number"),
    ("/v1/recommendations/alice?n=0", "n must be from 1 to 20"),
    ("/v1/recommendations/alice?n=21", "n must be from 1 to 20"),
    ("/v1/recommendations/alice?n=99999999999999999999", "n must be a whole number"),
    ("/v1/recommendations/" + "u" * 257, "user_id must be at most 256 characters"),
    ("/v1/recommendations/bad%00id", "user_id must not contain control characters"),
    ("/v1/recommendations/bad%07id", "user_id must not contain control characters"),
    ("/v1/recommendations/line%0Abreak", "user_id must not contain control characters"),
    ("/v1/recommendations/", "user_id must not be empty"),
    ("/v1/recommendations", "user_id must not be empty"),
    ("/v1/popular?n=x", "n must be a whole number"),
    ("/v1/popular?category=", "category must not be empty"),
    ("/v1/popular?category=a%01b", "category must not contain control characters"),
]


@pytest.mark.parametrize(("url", "detail"), BAD_REQUESTS)
def test_bad_input_gets_a_400_that_says_what_is_wrong(client, seeded, url, detail):
    response = client.get(url)
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"
    assert detail in response.get_json()["detail"]
    path = "/v1/popular" if url.startswith("/v1/popular") else "/v1/recommendations/{user_id}"
    assert_matches_openapi(response, path)


@pytest.mark.parametrize(("method", "url", "status"), [("get", "/v2/nothing", 404), ("post", "/v1/popular", 405)])
def test_unknown_routes_and_methods_answer_json(client, method, url, status):
    response = getattr(client, method)(url)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"error", "detail"}


def test_nothing_published_yet_is_a_503_and_not_ready(client):
    response = client.get("/v1/recommendations/alice")
    assert response.status_code == 503 and response.get_json()["error"] == "no_published_run"
    assert_matches_openapi(response, "/v1/recommendations/{user_id}")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json() == {"ready": False, "reason": "no_published_run"}
    assert_matches_openapi(ready, "/readyz")


def test_ready_reports_run_and_age(client, seeded):
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200 and body["run_id"] == RUN_A and body["ready"] is True
    assert body["age_seconds"] > 0
    assert_matches_openapi(response, "/readyz")
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_corrupt_stored_value_is_a_json_500_without_internals(client, seeded, redis_client):
    redis_client.set(KeyLayout("recs").user_recs(RUN_A, "default", "alice"), b"\x80not json")
    response = client.get("/v1/recommendations/alice")
    assert response.status_code == 500
    assert response.get_json() == {"error": "store_data_error", "detail": "stored data is invalid"}
    assert b"Traceback" not in response.data


def test_newly_published_run_is_served_within_the_refresh_interval(client, seeded, redis_client):
    assert client.get("/v1/recommendations/alice").get_json()["run_id"] == RUN_A
    seed_run(redis_client, RUN_B, {"alice": [("new", 1.0)]}, [("pop-b", 1.0)])
    deadline = time.monotonic() + 2
    while client.get("/v1/recommendations/alice").get_json()["run_id"] != RUN_B:
        assert time.monotonic() < deadline, "new run not picked up within 2 s"
        time.sleep(0.02)
    assert client.get("/v1/recommendations/alice?n=1").get_json()["items"] == [
        {"item_id": "new", "score": 1.0, "rank": 1, "source": "personalized"}
    ]


def test_requests_do_not_read_the_pointer(app, client, seeded, redis_client):
    client.get("/v1/recommendations/alice")  # first request loads the run
    app.extensions["recs_store"].close()  # stop the watcher so only requests touch Redis
    time.sleep(0.1)
    before = redis_client.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    for _ in range(20):
        client.get("/v1/recommendations/alice")
    after = redis_client.info("commandstats")["cmdstat_get"]["calls"]
    assert after - before == 20, "one GET per personalized request, none for the pointer"


def test_a_worker_started_during_an_outage_answers_from_the_fallback_file(own_redis, tmp_path):
    import redis

    seed_run(redis.Redis.from_url(own_redis.url), RUN_A, USERS, POPULAR, CATEGORIES)
    config = settings(own_redis.url, tmp_path)
    first = create_app(config)
    assert first.test_client().get("/v1/recommendations/alice").get_json()["source"] == "personalized"
    first.extensions["recs_store"].close()
    own_redis.stop()
    late = create_app(config)  # a worker (re)started while Redis is down
    try:
        client = late.test_client()
        body = client.get("/v1/recommendations/alice?n=2").get_json()
        assert without_rec_id(body) == {"user_id": "alice", "run_id": RUN_A, "source": "fallback", **NO_EXPERIMENT,
                        "items": [{"item_id": "p0", "score": 100.0, "rank": 1, "source": "fallback"},
                                  {"item_id": "p1", "score": 99.0, "rank": 2, "source": "fallback"}]}  # fmt: skip
        assert client.get("/v1/popular?n=1").get_json()["source"] == "fallback"
        assert client.get("/readyz").status_code == 503
        own_redis.start()
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/recommendations/alice").get_json()["source"] == "personalized"
    finally:
        late.extensions["recs_store"].close()


def test_a_fallback_file_of_another_key_prefix_is_not_used(own_redis, tmp_path):
    import redis

    seed_run(redis.Redis.from_url(own_redis.url), RUN_A, USERS, POPULAR, CATEGORIES)
    first = create_app(settings(own_redis.url, tmp_path))
    first.test_client().get("/v1/recommendations/alice")
    first.extensions["recs_store"].close()
    own_redis.stop()
    other = create_app(settings(own_redis.url, tmp_path, key_prefix="other"))
    try:
        response = other.test_client().get("/v1/recommendations/alice")
        assert response.status_code == 503 and response.get_json()["error"] == "store_unavailable"
    finally:
        other.extensions["recs_store"].close()


def test_without_redis_or_fallback_file_the_answer_is_a_json_503(tmp_path):
    from tools.processes import free_port

    config = settings(f"redis://127.0.0.1:{free_port()}/0", tmp_path, fallback_file=None)
    app = create_app(config)
    try:
        response = app.test_client().get("/v1/recommendations/alice")
        assert response.status_code == 503 and response.get_json()["error"] == "store_unavailable"
        assert_matches_openapi(response, "/v1/recommendations/{user_id}")
    finally:
        app.extensions["recs_store"].close()


def test_a_405_names_the_allowed_methods(client):
    response = client.post("/v1/popular")
    assert response.status_code == 405 and response.mimetype == "application/json"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD"}


@pytest.mark.parametrize(
    ("path", "query"), [("/v1/recommendations/caf\xe9", ""), ("/v1/recommendations/alice", "category=caf%E8")]
)
def test_ids_that_are_not_utf8_get_a_400_not_a_lookup(client, seeded, path, query):
    # As a WSGI server passes them: the path's raw bytes as latin-1 text, the query undecoded.
    response = client.get(path, environ_overrides={"PATH_INFO": path, "QUERY_STRING": query})
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
    assert "not valid UTF-8" in response.get_json()["detail"]


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("/v1/recommendations/alice?n=5&pad=" + "x" * 9000, {}, 414, "request_uri_too_long"),
        ("/v1/recommendations/alice", {"X-Pad": "y" * 17000}, 431, "request_header_fields_too_large"),
    ],
)
def test_over_long_requests_get_a_json_414_or_431(client, seeded, path, headers, status, error):
    response = client.get(path, headers=headers)
    assert response.status_code == status and response.mimetype == "application/json"
    assert response.get_json()["error"] == error and "at most" in response.get_json()["detail"]


def test_a_request_just_under_the_limits_is_answered(client, seeded):
    response = client.get("/v1/recommendations/alice?n=5&pad=" + "x" * 8000, headers={"X-Pad": "y" * 16000})
    assert response.status_code == 200


def test_a_percent_sign_in_an_id_is_not_decoded_twice(client, seeded):
    assert client.get("/v1/recommendations/caf%25E9").status_code == 200, "the id is the text 'caf%E9'"


def test_wrong_credentials_are_not_reported_as_an_unreachable_redis(redis_server, tmp_path):
    url = redis_server.url.replace("redis://", "redis://nobody:wrong@")
    app = create_app(settings(url, tmp_path, fallback_file=None))
    try:
        ready = app.test_client().get("/readyz")
        assert ready.status_code == 503 and ready.get_json() == {"ready": False, "reason": "redis_auth_failed"}
        assert_matches_openapi(ready, "/readyz")
    finally:
        app.extensions["recs_store"].close()
