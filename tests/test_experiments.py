"""Experiments through the real API and a real Redis: stable assignment, sticky shares, forced
variants, events in and statistics out."""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter

import pytest
from responses import without_rec_id
from store_seeding import seed_run

from store.contract import KeyLayout
from store.experiments import BUCKETS, FALLBACK, FORCED, Assignment, RecId, allocate, bucket_of

RUN_1, RUN_2 = "2026-11-28_20261128T020000000Z", "2026-11-29_20261129T020000000Z"
POPULAR = [(f"p{k}", float(100 - k)) for k in range(20)]
KEYS = KeyLayout("recs")
USERS = [f"user_{u:05d}" for u in range(2000)]


def experiment(shares: dict[str, float], salt: str = "salt-1") -> dict:
    return {"name": "ranking", "salt": salt, "control": "als", "shares": shares}


def variant_lists(variants, users=USERS[:50]) -> dict:
    """Each variant's lists, whose item ids say which variant they came from."""
    return {variant: {user: [(f"{variant}-item-{k}", 1.0 - k / 10) for k in range(3)] for user in users}
            for variant in variants}  # fmt: skip


def seed_experiment(client, run_id: str, shares: dict[str, float], salt: str = "salt-1") -> dict:
    return seed_run(
        client, run_id, {}, POPULAR, experiment=experiment(shares, salt), variant_lists=variant_lists(shares)
    )


def served_variants(client, users) -> dict[str, str]:
    return {user: client.get(f"/v1/recommendations/{user}").get_json()["variant"] for user in users}


def test_the_bucket_is_sha256_of_salt_and_user_id():
    digest = hashlib.sha256(b"salt-1\x00user_00042").hexdigest()
    assert bucket_of("salt-1", "user_00042") == int(digest[:16], 16) % BUCKETS
    assert len({bucket_of("salt-1", f"u{i}") for i in range(5000)}) > 3900, "buckets spread over the range"


def test_the_split_over_10000_users_through_the_api_matches_the_shares(client, redis_client):
    shares = {"als": 0.5, "popular": 0.3, "wide": 0.2}
    seed_experiment(redis_client, RUN_1, shares)
    counts = Counter(served_variants(client, [f"user_{u}" for u in range(10_000)]).values())
    assert sum(counts.values()) == 10_000
    for variant, share in shares.items():
        sigma = math.sqrt(10_000 * share * (1 - share))
        assert abs(counts[variant] - 10_000 * share) < 4 * sigma, (variant, counts)


def test_changing_shares_moves_only_the_buckets_that_must_move():
    before = allocate({"a": 0.3, "b": 0.3, "c": 0.4}, None)
    assert before == {"a": [[0, 3000]], "b": [[3000, 6000]], "c": [[6000, 10000]]}
    after = allocate({"a": 0.4, "b": 0.3, "c": 0.3}, before)
    old, new = Assignment("x", "s", before), Assignment("x", "s", after)
    moved = [bucket for bucket in range(BUCKETS) if old._owner[bucket] != new._owner[bucket]]
    assert len(moved) == 1000, "only a tenth of the buckets change hands"
    assert {(old._owner[b], new._owner[b]) for b in moved} == {("c", "a")}, "b keeps every bucket"


def test_rec_ids_round_trip_and_refuse_anything_else():
    rec = RecId.new(RUN_1, "ranking", "als", FORCED)
    assert RecId.parse(str(rec)) == rec
    for bad in ("", "x", f"{RUN_1}~ranking~als~z~0123456789abcdef", f"{RUN_1}~ranking~a:b~a~0123456789abcdef"):
        with pytest.raises(ValueError):
            RecId.parse(bad)


def test_each_user_gets_their_variants_list_and_is_counted_as_assigned(client, redis_client):
    shares = {"als": 0.5, "popular": 0.5}
    seed_experiment(redis_client, RUN_1, shares)
    expected = Assignment("ranking", "salt-1", allocate(shares, None))
    for user in USERS[:50]:
        body = without_rec_id(client.get(f"/v1/recommendations/{user}?n=2").get_json())
        variant = expected.variant_for(user)
        assert (body["experiment"], body["variant"], body["forced"], body["source"]) == ("ranking", variant, False,
                                                                                          "personalized")  # fmt: skip
        assert [item["item_id"] for item in body["items"]] == [f"{variant}-item-0", f"{variant}-item-1"]
    assigned = {v: redis_client.pfcount(KEYS.experiment_data("ranking", "salt-1", "assigned", v)) for v in shares}
    assert sum(assigned.values()) == 50 and min(assigned.values()) > 10


def test_a_forced_variant_is_served_marked_and_not_counted(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    body = client.get(f"/v1/recommendations/{USERS[0]}?variant=popular&n=1").get_json()
    assert body["variant"] == "popular" and body["forced"] is True
    assert RecId.parse(body["rec_id"]).forced is True
    assert body["items"][0]["item_id"] == "popular-item-0"
    assert redis_client.pfcount(KEYS.experiment_data("ranking", "salt-1", "assigned", "popular")) == 0
    unknown = client.get(f"/v1/recommendations/{USERS[0]}?variant=nope")
    assert unknown.status_code == 400 and "variant 'nope' is not in run" in unknown.get_json()["detail"]
    accepted = client.post("/v1/events", json={"user_id": USERS[0], "item_id": "x", "type": "click",
                                               "rec_id": body["rec_id"]})  # fmt: skip
    assert accepted.status_code == 202
    assert redis_client.xlen(KEYS.events_stream) == 1, "stored"
    assert redis_client.hgetall(KEYS.experiment_data("ranking", "salt-1", "counts")) == {}, "but not counted"


def test_changed_shares_move_only_the_expected_users_through_the_api(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    before = served_variants(client, USERS)
    seed_experiment(redis_client, RUN_2, {"als": 0.7, "popular": 0.3})
    deadline = time.monotonic() + 2
    while client.get("/v1/recommendations/x").get_json()["run_id"] != RUN_2:
        assert time.monotonic() < deadline, "the new run was not served within 2 s"
    after = served_variants(client, USERS)
    moved = {user for user in USERS if before[user] != after[user]}
    assert {(before[u], after[u]) for u in moved} == {("popular", "als")}, "users only move into the grown variant"
    expected = {user for user in USERS if 8000 <= bucket_of("salt-1", user) < 10000}
    assert moved == expected and 250 < len(moved) < 550  # about a fifth of 2,000


def test_the_same_assignment_from_two_api_processes(redis_server, redis_client, tmp_path):
    import requests

    from tools.processes import ApiServer

    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    servers = [
        ApiServer(redis_server.url, tmp_path / f"api-{i}.log", api={"workers": 2, "threads": 2}) for i in range(2)
    ]
    for server in servers:
        server.start()
    try:
        answers = [
            {user: requests.get(f"{server.url}/v1/recommendations/{user}", timeout=5).json()["variant"]
             for user in USERS[:300]}
            for server in servers
        ]  # fmt: skip
    finally:
        for server in servers:
            server.stop()
    expected = Assignment("ranking", "salt-1", allocate({"als": 0.5, "popular": 0.5}, None))
    assert answers[0] == answers[1] == {user: expected.variant_for(user) for user in USERS[:300]}


def post(client, body):
    return client.post("/v1/events", json=body)


BAD_EVENTS = [
    ({"item_id": "i", "type": "click"}, "event.user_id is required and must be a string"),
    ({"user_id": "u", "item_id": "i", "type": "like"}, "event.type must be one of impression, click, conversion"),
    ({"user_id": "u", "item_id": "i", "type": "click", "colour": "red"}, "event.colour is not an event field"),
    ({"user_id": "u", "item_id": "i\x00", "type": "click"}, "event.item_id must not contain control characters"),
    ({"user_id": "u", "item_id": "i", "type": "click", "ts": "yesterday"}, "event.ts is not ISO-8601"),
    ({"user_id": "u", "item_id": "i", "type": "click", "ts": "2026-11-29T10:00"}, "event.ts must name its time zone"),
    ({"user_id": "u", "item_id": "i", "type": "click", "ts": 1e13}, "event.ts must be epoch seconds between"),
    ({"user_id": "u", "item_id": "i", "type": "click", "rec_id": "forged"}, "event.rec_id is not a rec_id"),
    ({"user_id": "u", "item_id": "i", "type": "click", "variant": "a:b"}, "event.variant must be 1 to 32"),
    ({"user_id": "u", "item_id": "i", "type": "click", "variant": "nope"}, "event.variant names variant 'nope'"),
    ({"user_id": "u", "item_id": "i", "type": "click", "variant": "als\n"}, "event.variant must be 1 to 32"),
    ({"user_id": "u", "item_id": "i", "type": "click", "rec_id": f"{RUN_1}~ranking~nope~a~0123456789abcdef"},
     "event.rec_id names variant 'nope'"),
    ({"user_id": "u", "item_id": "i", "type": "click", "ts": 10**400}, "event.ts must be epoch seconds between"),
    ({"user_id": "u\ud800", "item_id": "i", "type": "click"}, "event.user_id must be valid Unicode text"),
    ([{"user_id": "u", "item_id": "i", "type": "click"}, {"user_id": "u", "type": "click"}],
     "events[1].item_id is required"),
    ([], "a non-empty array of event objects"),
    ("just text", "an event object or a non-empty array"),
    ([{"user_id": "u", "item_id": "i", "type": "click"}] * 501, "a batch holds at most 500 events, got 501"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "detail"), BAD_EVENTS, ids=range(len(BAD_EVENTS)))
def test_bad_events_get_a_400_naming_the_field_and_nothing_is_stored(client, redis_client, body, detail):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    response = post(client, body)
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
    assert detail in response.get_json()["detail"]
    assert redis_client.xlen(KEYS.events_stream) == 0


def test_a_body_that_is_not_json_or_too_large_is_refused(client, redis_client):
    not_json = client.post("/v1/events", data=b"{nope", content_type="application/json")
    assert not_json.status_code == 400 and "must be JSON" in not_json.get_json()["detail"]
    huge = client.post("/v1/events", data=b"[" + b" " * 1_100_000 + b"]", content_type="application/json")
    assert huge.status_code == 413 and huge.mimetype == "application/json"
    assert huge.get_json()["error"] == "request_entity_too_large"


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def two_proportion_p(k1: int, n1: int, k0: int, n0: int) -> float:
    pooled = (k1 + k0) / (n1 + n0)
    z = (k1 / n1 - k0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    return math.erfc(abs(z) / math.sqrt(2))


def test_statistics_equal_the_hand_computed_values(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    # A fixed event set: per variant, users with impressions, some clicks and conversions.
    plan = {"als": (40, 100, 30, 6), "popular": (36, 90, 15, 2)}  # users, impressions, clicks, conversions
    for variant, (users, impressions, clicks, conversions) in plan.items():
        events = [{"user_id": f"{variant}-u{i % users}", "item_id": "i", "type": "impression", "variant": variant}
                  for i in range(impressions)]  # fmt: skip
        events += [
            {"user_id": f"{variant}-u{i}", "item_id": "i", "type": "click", "variant": variant} for i in range(clicks)
        ]
        events += [{"user_id": f"{variant}-u{i}", "item_id": "i", "type": "conversion", "variant": variant}
                   for i in range(conversions)]  # fmt: skip
        assert post(client, events).get_json() == {"accepted": len(events), "duplicate": False}
    report = client.get("/v1/experiments/ranking").get_json()
    rows = {row["variant"]: row for row in report["variants"]}
    for variant, (users, impressions, clicks, conversions) in plan.items():
        row = rows[variant]
        counted = (row["exposed_users"], row["impressions"], row["clicks"], row["conversions"])
        assert counted == (users, impressions, clicks, conversions)
        assert row["ctr"]["rate"] == pytest.approx(clicks / impressions)
        assert (row["ctr"]["ci_low"], row["ctr"]["ci_high"]) == pytest.approx(wilson(clicks, impressions))
        assert (row["conversion_rate"]["ci_low"], row["conversion_rate"]["ci_high"]) == pytest.approx(
            wilson(conversions, impressions)
        )
    vs = rows["popular"]["vs_control"]
    assert vs["ctr"]["p_value"] == pytest.approx(two_proportion_p(15, 90, 30, 100))
    assert vs["ctr"]["lift"] == pytest.approx(15 / 90 - 30 / 100)
    assert vs["conversion_rate"]["p_value"] == pytest.approx(two_proportion_p(2, 90, 6, 100))
    expected_users = 38.0  # 76 exposed users against 50/50 shares
    chi_square = (40 - expected_users) ** 2 / expected_users + (36 - expected_users) ** 2 / expected_users
    assert report["sample_ratio"]["chi_square"] == pytest.approx(chi_square)
    assert report["sample_ratio"]["p_value"] == pytest.approx(math.erfc(math.sqrt(chi_square / 2)))  # chi2, 1 dof
    assert report["sample_ratio"]["mismatch"] is False
    assert client.get("/v1/experiments/unknown").status_code == 404


def test_events_without_rec_id_or_variant_follow_the_users_assignment(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    expected = Assignment("ranking", "salt-1", allocate({"als": 0.5, "popular": 0.5}, None))
    events = [{"user_id": user, "item_id": "i", "type": "impression"} for user in USERS[:100]]
    assert post(client, events).status_code == 202
    rows = {row["variant"]: row for row in client.get("/v1/experiments/ranking").get_json()["variants"]}
    wanted = Counter(expected.variant_for(user) for user in USERS[:100])
    assert {variant: rows[variant]["exposed_users"] for variant in rows} == dict(wanted)


def test_a_retried_batch_with_its_idempotency_key_is_stored_once(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    events = [{"user_id": "u1", "item_id": "i1", "type": "impression", "variant": "als"}] * 3
    headers = {"Idempotency-Key": "batch-0001"}
    first = client.post("/v1/events", json=events, headers=headers)
    again = client.post("/v1/events", json=events, headers=headers)
    assert (first.status_code, first.get_json()) == (202, {"accepted": 3, "duplicate": False})
    assert (again.status_code, again.get_json()) == (202, {"accepted": 0, "duplicate": True})
    assert redis_client.xlen(KEYS.events_stream) == 3
    assert redis_client.hget(KEYS.experiment_data("ranking", "salt-1", "counts"), "als:impression") == b"3"
    bad = client.post("/v1/events", json=events, headers={"Idempotency-Key": "no spaces"})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.get_json()["detail"]


def test_events_about_other_experiments_or_fallback_lists_are_stored_but_not_counted(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    other = RecId.new(RUN_1, "older-test", "als")
    fallback = RecId.new(RUN_1, "ranking", "als", FALLBACK)
    events = [{"user_id": "u1", "item_id": "i1", "type": "click", "rec_id": str(rec)} for rec in (other, fallback)]
    assert client.post("/v1/events", json=events).get_json()["accepted"] == 2
    assert redis_client.xlen(KEYS.events_stream) == 2
    assert [entry[1][b"counted"] for entry in redis_client.xrange(KEYS.events_stream)] == [b"0", b"0"]
    assert redis_client.hgetall(KEYS.experiment_data("ranking", "salt-1", "counts")) == {}


def test_a_new_salt_starts_new_counters_and_the_report_shows_only_them(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5}, salt="salt-1")
    client.post("/v1/events", json=[{"user_id": "u1", "item_id": "i", "type": "impression", "variant": "als"}])
    seed_experiment(redis_client, RUN_2, {"als": 0.5, "popular": 0.5}, salt="salt-2")
    report = client.get("/v1/experiments/ranking").get_json()
    assert sum(row["impressions"] for row in report["variants"]) == 0
    assert "salt" not in report and len(report["generation"]) == 8


def test_experiment_names_are_checked_exactly(client, redis_client):
    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    assert client.get("/v1/experiments/ranking%0A").status_code == 400
    assert client.get("/v1/recommendations/u1?variant=als%0A").status_code == 400
    assert client.get("/v1/experiments/ranking").status_code == 200


def test_a_rollback_restores_the_older_runs_experiment_definition(redis_client):
    import json

    from store.admin import roll_back
    from store.writer import PublishPolicy

    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    seed_experiment(redis_client, RUN_2, {"als": 0.8, "popular": 0.2})
    roll_back(redis_client, KEYS, PublishPolicy(keep_runs=3, batch_size=100, lock_ttl_seconds=30))
    definition = json.loads(redis_client.get(KEYS.experiment_definition("ranking")))
    assert definition["shares"] == {"als": 0.5, "popular": 0.5}


def test_events_metric_labels_only_variants_the_experiment_vouches_for(client, redis_client):
    from prometheus_client.parser import text_string_to_metric_families

    seed_experiment(redis_client, RUN_1, {"als": 0.5, "popular": 0.5})
    other_experiment = f"{RUN_1}~other~made-up-{{}}~a~0123456789abcdef"
    click = {"user_id": USERS[0], "item_id": "i", "type": "click"}
    events = [{**click, "rec_id": other_experiment.format(k)} for k in range(5)] + [{**click, "variant": "als"}]
    assert post(client, events).status_code == 202
    assert client.get("/v1/experiments/ranking").status_code == 200
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
               for sample in family.samples}  # fmt: skip
    events_by_variant = {dict(labels)["variant"]: value for (name, labels), value in samples.items()
                         if name == "recs_events_total"}  # fmt: skip
    assert events_by_variant == {"-": 5, "als": 1}
    assert samples[("recs_redis_seconds_count", ())] >= 2  # the batch's script and the statistics
