"""Requests with context through the real API and a real Redis: category filters and exclusions
that still return n items, exploration slots for cold items, and item-to-item lists."""

from __future__ import annotations

import pytest
from responses import assert_matches_openapi
from store_seeding import seed_run

from serving import create_app
from store.contract import KeyLayout
from store.registry import known_runs

RUN_A, RUN_B, RUN_C = (f"2026-11-2{day}_2026112{day}T020000000Z" for day in (7, 8, 9))
KEYS = KeyLayout("recs")
# Items d* are Drama, c* Comedy; x1 is both.
ITEM_CATEGORIES = {**{f"d{i}": ["Drama"] for i in range(10)}, **{f"c{i}": ["Comedy"] for i in range(10)},
                   "x1": ["Comedy", "Drama"], "n1": ["Drama"], "n2": ["Drama"], "n3": ["Comedy"]}  # fmt: skip
COLD = {"Drama": ["n1", "n2"], "Comedy": ["n3"]}
POPULAR = [(f"d{i}", 100.0 - i) for i in range(10)] + [(f"c{i}", 50.0 - i) for i in range(10)]
CATEGORY_LISTS = {"Drama": POPULAR[:10], "Comedy": POPULAR[10:]}
ALICE = [("c0", 0.9), ("d5", 0.8), ("x1", 0.7), ("c1", 0.6), ("d6", 0.5), ("c2", 0.4)]
SIMILAR = {"d0": ("als", [("d1", 0.9), ("d2", 0.8), ("x1", 0.5)]), "n1": ("content", [("d3", 0.7), ("d4", 0.6)])}


def seed(client, run_id=RUN_A):
    seed_run(client, run_id, {"alice": ALICE, "bob": [("c0", 0.5)]}, POPULAR, CATEGORY_LISTS,
             context={"alice": (["d0", "d1"], ["Drama", "Comedy"]), "bob": ([], ["Comedy"])},
             catalogue=(ITEM_CATEGORIES, COLD), similar=SIMILAR)  # fmt: skip


@pytest.fixture
def seeded(redis_client):
    seed(redis_client)


def items_of(response) -> list[tuple[str, str]]:
    return [(item["item_id"], item["source"]) for item in response.get_json()["items"]]


def test_a_category_filter_keeps_the_users_order_and_fills_up_with_unseen_popular_items(client, seeded):
    response = client.get("/v1/recommendations/alice?category=Drama&n=6")
    assert response.status_code == 200
    assert_matches_openapi(response, "/v1/recommendations/{user_id}")
    # d5, x1, d6 from alice's list; then Drama's popular list without d0 and d1 (seen) or d5, d6 (taken).
    assert items_of(response) == [("d5", "personalized"), ("x1", "personalized"), ("d6", "personalized"),
                                  ("d2", "popular"), ("d3", "popular"), ("d4", "popular")]  # fmt: skip
    assert [item["rank"] for item in response.get_json()["items"]] == [1, 2, 3, 4, 5, 6]


def test_an_unknown_category_is_a_404_naming_it(client, seeded):
    response = client.get("/v1/recommendations/alice?category=Opera")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found", "detail": f"category 'Opera' is not in run {RUN_A}"}
    assert_matches_openapi(response, "/v1/recommendations/{user_id}")


def test_excluded_items_are_left_out_and_the_list_still_has_n(client, seeded):
    response = client.get("/v1/recommendations/alice?exclude=c0,x1&n=5")
    assert items_of(response) == [("d5", "personalized"), ("c1", "personalized"), ("d6", "personalized"),
                                  ("c2", "personalized"), ("d2", "popular")]  # fmt: skip
    too_many = client.get("/v1/recommendations/alice?exclude=" + ",".join(f"i{k}" for k in range(51)))
    assert too_many.status_code == 400 and "exclude takes at most 50 item ids, got 51" in too_many.get_json()["detail"]
    bad = client.get("/v1/recommendations/alice?exclude=c0,,x1")
    assert bad.status_code == 400 and "exclude item id must not be empty" in bad.get_json()["detail"]


@pytest.mark.parametrize("exclude", ["c0", "c0,zz"])
def test_only_the_first_n_plus_excluded_stored_items_are_needed_and_all_of_them_are_used(client, seeded, exclude):
    # Lookups decode n + len(exclude) of the stored items: the excluded item's place is taken by
    # the next stored item (c1, fourth of alice's six), not by a popular one.
    answer = client.get(f"/v1/recommendations/alice?n=3&exclude={exclude}")
    assert items_of(answer) == [("d5", "personalized"), ("x1", "personalized"), ("c1", "personalized")]


def test_unknown_users_with_a_category_get_that_categorys_popular_list(client, seeded):
    response = client.get("/v1/recommendations/stranger?category=Comedy&n=3&exclude=c1")
    assert response.get_json()["source"] == "popular"
    assert items_of(response) == [("c0", "popular"), ("c2", "popular"), ("c3", "popular")]


def test_popular_lists_by_category_are_served_from_memory(app, client, seeded, redis_client):
    client.get("/v1/popular?category=Drama")
    app.extensions["recs_store"].close()  # no watcher: only requests would reach Redis now
    before = redis_client.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    for _ in range(5):
        assert client.get("/v1/popular?category=Comedy&n=2").get_json()["items"][0]["item_id"] == "c0"
        client.get("/v1/recommendations/alice?category=Drama&n=3")
    after = redis_client.info("commandstats")["cmdstat_get"]["calls"]
    assert after - before == 5, "one GET per personalized lookup, none for categories or filters"


def test_exploration_slots_go_to_cold_items_of_the_users_strongest_categories(redis_client, app_config):
    seed(redis_client)
    app = create_app({**app_config, "api": {**app_config["api"], "exploration_slots": 2}})
    try:
        client = app.test_client()
        alice = items_of(client.get("/v1/recommendations/alice?n=5"))
        assert [source for _, source in alice] == ["personalized"] * 3 + ["new"] * 2
        assert {item for item, _ in alice[3:]} <= {"n1", "n2", "n3"}, "cold items of Drama and Comedy"
        bob = items_of(client.get("/v1/recommendations/bob?n=3"))
        assert bob[-1] == ("n3", "new"), "bob's strongest category is Comedy"
        drama_only = items_of(client.get("/v1/recommendations/alice?n=4&category=Drama&exclude=n1"))
        assert drama_only[-1] == ("n2", "new") and ("n1", "new") not in drama_only
        unknown = items_of(client.get("/v1/recommendations/stranger?n=3"))
        assert all(source == "popular" for _, source in unknown), "no exploration without a personalized list"
    finally:
        app.extensions["recs_store"].close()


def test_similar_items_for_warm_and_cold_items(client, seeded):
    warm = client.get("/v1/similar/d0?n=2")
    assert warm.status_code == 200
    assert_matches_openapi(warm, "/v1/similar/{item_id}")
    assert warm.get_json() == {"item_id": "d0", "run_id": RUN_A, "method": "als",
                               "items": [{"item_id": "d1", "score": 0.9, "rank": 1},
                                         {"item_id": "d2", "score": 0.8, "rank": 2}]}  # fmt: skip
    cold = client.get("/v1/similar/n1").get_json()
    assert cold["method"] == "content" and [item["item_id"] for item in cold["items"]] == ["d3", "d4"]
    unknown = client.get("/v1/similar/nothing")
    assert unknown.status_code == 404
    assert unknown.get_json()["detail"] == f"item 'nothing' has no item-to-item list in run {RUN_A}"
    assert_matches_openapi(unknown, "/v1/similar/{item_id}")
    assert client.get("/v1/similar/d0?n=0").status_code == 400


def test_the_new_keys_are_retained_and_pruned_with_their_runs(redis_client):
    from store.writer import prune

    for run_id in (RUN_A, RUN_B, RUN_C):
        seed(redis_client, run_id)
    prune(redis_client, KEYS, keep=2)
    assert known_runs(redis_client, KEYS) == [RUN_C, RUN_B]
    for run_id, present in ((RUN_A, 0), (RUN_B, 1), (RUN_C, 1)):
        for key in (KEYS.similar(run_id, "d0"), KEYS.item_categories(run_id), KEYS.cold(run_id)):
            assert redis_client.exists(key) == present, key


def test_exploration_never_takes_more_than_half_of_an_answer_nor_a_seen_cold_item(redis_client, app_config):
    seed_run(redis_client, RUN_A, {"alice": ALICE}, POPULAR, CATEGORY_LISTS,
             context={"alice": (["n1"], ["Drama", "Comedy"])}, catalogue=(ITEM_CATEGORIES, COLD))  # fmt: skip
    app = create_app({**app_config, "api": {**app_config["api"], "exploration_slots": 5}})
    try:
        client = app.test_client()
        two = items_of(client.get("/v1/recommendations/alice?n=2"))
        assert [source for _, source in two] == ["personalized", "new"]
        five = items_of(client.get("/v1/recommendations/alice?n=5"))
        assert [source for _, source in five].count("new") == 2, "n2 and n3: n1 was seen, and at most half"
        assert "n1" not in {item for item, _ in five}
    finally:
        app.extensions["recs_store"].close()


def test_a_worker_started_from_the_fallback_file_still_serves_categories(own_redis, app_config, tmp_path):
    import redis

    seed(redis.Redis.from_url(own_redis.url))
    config = {**app_config, "store": {"url": own_redis.url}}
    first = create_app(config)
    first.test_client().get("/v1/recommendations/alice")  # writes the fallback file
    first.extensions["recs_store"].close()
    own_redis.stop()
    late = create_app(config)
    try:
        response = late.test_client().get("/v1/recommendations/alice?category=Comedy&n=3")
        assert response.status_code == 200 and response.get_json()["source"] == "fallback"
        assert items_of(response) == [("c0", "fallback"), ("c1", "fallback"), ("c2", "fallback")]
        assert late.test_client().get("/v1/popular?category=Drama&n=1").get_json()["items"][0]["item_id"] == "d0"
    finally:
        late.extensions["recs_store"].close()


def test_when_the_popular_list_runs_out_the_answer_is_shorter_but_never_repeats(client, seeded):
    drama = [f"d{i}" for i in range(2, 10)]  # d0 and d1 are seen
    response = client.get(f"/v1/recommendations/alice?category=Drama&n=10&exclude={','.join(drama)}")
    items = [item for item, _ in items_of(response)]
    assert items == ["x1"], "d5 and d6 are excluded too; the rest of Drama is seen or excluded"
