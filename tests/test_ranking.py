"""Seen-item exclusion must be exact, for ALS and for popularity alike."""

import pytest
from pyspark.sql import functions as F

from conf.schema import TrainSection
from jobs.ranking import als_candidates, candidate_count_of, item_popularity, popular_candidates, seen_items, top_unseen
from jobs.train import fit_als


def item_lists(frame):
    return {r["user_idx"]: [e["item_idx"] for e in r["items"]] for r in frame.collect()}


def test_top_unseen_filters_in_order_and_cuts_at_n(spark):
    candidates = spark.createDataFrame(
        [(1, [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)]), (2, [(3, 0.5)])],
        "user_idx int, candidates array<struct<item_idx:int,score:float>>",
    )
    seen = spark.createDataFrame([(1, [1, 3])], "user_idx int, seen array<int>")
    assert item_lists(top_unseen(candidates, seen, 2)) == {1: [2, 4], 2: [3]}


@pytest.mark.parametrize(
    ("n_seen", "n", "want"), [(0, 20, 32), (12, 20, 32), (13, 20, 64), (0, 1, 1), (1000, 10, 1024)]
)
def test_candidate_count_is_the_next_power_of_two(spark, n_seen, n, want):
    frame = spark.createDataFrame([(n_seen,)], "n_seen int")
    assert frame.select(candidate_count_of(F.col("n_seen"), n)).first()[0] == want


def test_popular_candidates_cover_seen_plus_n_in_popularity_order(spark):
    interactions = spark.createDataFrame(
        [(u, i) for u, items in {1: [1, 2, 3], 2: [1, 2], 3: [1, 4], 4: [5]}.items() for i in items],
        "user_idx int, item_idx int",
    )
    seen = seen_items(interactions)
    top = top_unseen(popular_candidates(item_popularity(interactions), seen, 2), seen, 2)
    # popularity: 1 (3 users), 2 (2 users), then 3, 4, 5 (1 user each, ties by index)
    assert item_lists(top) == {1: [4, 5], 2: [3, 4], 3: [2, 3], 4: [1, 2]}


@pytest.fixture(scope="module")
def heavy_user_model(spark):
    # 60 items; user 0 has seen 50 of them, user 1 has seen 58, others a few each.
    rows = [(0, i, 1.0) for i in range(50)] + [(1, i, 1.0) for i in range(58)]
    rows += [(u, (u * 7 + j) % 60, 1.0) for u in range(2, 40) for j in range(6)]
    interactions = spark.createDataFrame(rows, "user_idx int, item_idx int, weight double")
    params = {"implicit_prefs": True, "rank": 4, "reg_param": 0.1, "alpha": 5.0, "max_iter": 5, "seed": 1,
              "checkpoint_interval": 2, "weight_transform": "none", "bm25_k1": 100.0, "bm25_b": 0.8,
              "num_user_blocks": 2, "num_item_blocks": 2}  # fmt: skip
    return interactions, fit_als(interactions, TrainSection(**params))


def test_als_top_n_is_exact_for_heavy_users(heavy_user_model):
    interactions, model = heavy_user_model
    seen = seen_items(interactions)
    lists = item_lists(top_unseen(als_candidates(model, seen, 5), seen, 5))
    seen_by_user = {r["user_idx"]: set(r["seen"]) for r in seen.collect()}
    assert len(lists[0]) == 5, "a heavy user still gets N unseen items"
    assert len(lists[1]) == 2, "only 2 unseen items exist for user 1"
    assert all(len(items) == 5 for user, items in lists.items() if user >= 2)
    for user, items in lists.items():
        assert not set(items) & seen_by_user[user]
        assert len(set(items)) == len(items)


def test_raw_als_output_would_repeat_seen_items(heavy_user_model):
    # Why exclusion exists: the raw top-5 of the heavy user is mostly items already seen.
    interactions, model = heavy_user_model
    raw = model.recommendForUserSubset(interactions.select("user_idx").where("user_idx = 0").distinct(), 5)
    raw_items = {r.item_idx for r in raw.select(F.explode("recommendations").alias("r")).select("r.*").collect()}
    assert raw_items & set(range(50))


def test_explicit_ratings_train_and_predict_on_the_rating_scale(spark):
    # Explicit mode fits the ratings themselves: a user's predictions land near what they rate.
    rows = [(u, i, 5.0 if (u + i) % 2 == 0 else 1.0) for u in range(30) for i in range(20) if (u * 7 + i) % 3]
    interactions = spark.createDataFrame(rows, "user_idx int, item_idx int, weight double")
    params = {"implicit_prefs": False, "rank": 4, "reg_param": 0.05, "alpha": 1.0, "max_iter": 10, "seed": 3,
              "checkpoint_interval": 5, "weight_transform": "none", "bm25_k1": 100.0, "bm25_b": 0.8,
              "num_user_blocks": 2, "num_item_blocks": 2}  # fmt: skip
    model = fit_als(interactions, TrainSection(**params))
    predictions = model.transform(interactions.withColumnRenamed("weight", "rating")).toPandas()
    error = (predictions["prediction"] - predictions["rating"]).abs().mean()
    # Implicit mode would predict preferences near 0..1, far from ratings of 1 and 5.
    assert error < 1.0, f"mean absolute error {error:.2f} on the training ratings"
