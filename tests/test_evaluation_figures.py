"""The figures evaluate reports, on inline DataFrames small enough to work out by hand: the
weightings, slices, beyond-accuracy figures, and the ranking metrics against Spark's own
RankingEvaluator."""

from __future__ import annotations

import math
import random

import pytest

from conf.schema import SliceSection
from jobs.beyond_accuracy import beyond_accuracy
from jobs.metrics import per_user_metrics, ranking_metrics
from jobs.slices import by_activity, by_item_slice, item_stats, user_activity
from jobs.weighting import training_ratings

LOG2_3 = math.log2(3)


def ratings_of(spark, params_changes: dict, base_config):
    rows = [(0, 0, 2.0), (0, 1, 1.0), (1, 0, 4.0), (2, 2, 1.0), (2, 3, 2.0)]
    frame = spark.createDataFrame(rows, "user_idx int, item_idx int, weight double")
    params = base_config.train.model_copy(update=params_changes)
    return {(r["user_idx"], r["item_idx"]): r["rating"] for r in training_ratings(frame, params).collect()}


def test_bm25_and_tfidf_weightings_match_their_formulas(spark, base_config):
    idf = {0: math.log(4 / 3), 1: math.log(4 / 2), 2: math.log(4 / 3)}  # 4 items; users hold 2, 1, 2
    tfidf = ratings_of(spark, {"weight_transform": "tfidf"}, base_config)
    assert tfidf == pytest.approx({(0, 0): math.sqrt(2) * idf[0], (0, 1): idf[0], (1, 0): 2 * idf[1],
                                   (2, 2): idf[2], (2, 3): math.sqrt(2) * idf[2]}, rel=1e-6)  # fmt: skip
    k1, b = 100.0, 0.8
    totals, mean = {0: 6.0, 1: 1.0, 2: 1.0, 3: 2.0}, 2.5
    bm25 = ratings_of(spark, {"weight_transform": "bm25", "bm25_k1": k1, "bm25_b": b}, base_config)
    expected = {}
    for (user, item), weight in {(0, 0): 2.0, (0, 1): 1.0, (1, 0): 4.0, (2, 2): 1.0, (2, 3): 2.0}.items():
        length = (1 - b) + b * totals[item] / mean
        expected[(user, item)] = weight * (k1 + 1) / (k1 * length + weight) * idf[user]
    assert bm25 == pytest.approx(expected, rel=1e-6)
    assert ratings_of(spark, {"weight_transform": "log1p"}, base_config)[(1, 0)] == pytest.approx(math.log(5))


@pytest.fixture
def lists(spark):
    recommended = spark.createDataFrame([(1, [1, 5]), (2, [4, 3])], "user_idx int, items array<int>")
    relevant = spark.createDataFrame([(1, [1, 2]), (2, [3])], "user_idx int, relevant array<int>")
    stats = spark.createDataFrame(
        [
            (1, 4, True, ["A"]),
            (2, 1, False, ["B"]),
            (3, 2, True, ["A", "B"]),
            (4, 1, False, ["B"]),
            (5, 1, False, None),
        ],
        "item_idx int, users long, head boolean, categories array<string>",
    )
    return recommended, relevant, stats


def test_item_slices_cut_each_users_relevant_items(lists):
    recommended, relevant, stats = lists
    sliced = by_item_slice(recommended, relevant, stats, k=2, with_categories=True)
    ndcg = {group: {name: (m["ndcg_at_k"], m["users"]) for name, m in sliced[group].items()}
            for group in ("items", "categories")}  # fmt: skip
    # head: user 1 finds item 1 first (1.0), user 2 item 3 second (1 / log2 3); tail: user 1 misses 2.
    assert ndcg["items"] == {"head": pytest.approx(((1 + 1 / LOG2_3) / 2, 2)), "tail": (0.0, 1)}
    assert ndcg["categories"] == {"A": pytest.approx(((1 + 1 / LOG2_3) / 2, 2)),
                                  "B": pytest.approx(((0 + 1 / LOG2_3) / 2, 2))}  # fmt: skip


def test_user_activity_slices(spark, lists):
    recommended, relevant, _ = lists
    train = spark.createDataFrame([(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3)], "user_idx int, item_idx int")
    activity = user_activity(train, SliceSection(light_min=2, heavy_min=3, head_share=0.5))
    assert {r["user_idx"]: r["activity"] for r in activity.collect()} == {1: "cold", 2: "light", 3: "heavy"}
    sliced = by_activity(per_user_metrics(recommended, relevant, 2), activity)
    # user 1: 1 / (1 + 1 / log2 3); user 2: (1 / log2 3) / 1; nobody heavy.
    assert sliced["cold"]["ndcg_at_k"] == pytest.approx(1 / (1 + 1 / LOG2_3))
    assert sliced["light"]["ndcg_at_k"] == pytest.approx(1 / LOG2_3)
    assert sliced["heavy"] == {"precision_at_k": None, "recall_at_k": None, "ndcg_at_k": None, "map_at_k": None,
                               "users": 0}  # fmt: skip


def test_the_head_is_the_most_popular_items_holding_the_share(spark):
    train = spark.createDataFrame([(u, 0) for u in range(3)] + [(u, 1) for u in range(2)] + [(0, 2)],
                                  "user_idx int, item_idx int")  # fmt: skip
    heads = {share: sorted(r["item_idx"] for r in item_stats(train, None, share).where("head").collect())
             for share in (0.5, 0.6, 0.9)}  # fmt: skip
    # 6 interactions: item 0 holds 3, item 1 2, item 2 1; the item crossing the share is in the head.
    assert heads == {0.5: [0], 0.6: [0, 1], 0.9: [0, 1, 2]}


def test_beyond_accuracy_figures(lists):
    recommended, _, stats = lists
    figures = beyond_accuracy(recommended, stats, users=4, catalog_size=5, k=2, with_categories=True)
    # Shares of users: item 1 4/4, 5 1/4, 4 1/4, 3 2/4.
    assert figures == pytest.approx({
        "coverage": 4 / 5,
        "novelty": ((0 + 2) / 2 + (2 + 1) / 2) / 2,
        "arp": ((1 + 0.25) / 2 + (0.25 + 0.5) / 2) / 2,
        "head_share": 2 / 4,
        "diversity": 0.5,  # user 2's pair {B} and {A, B}; user 1's item 5 has no categories
    })  # fmt: skip
    assert beyond_accuracy(recommended, stats, 4, 5, 2, with_categories=False)["diversity"] is None


def test_ranking_metrics_agree_with_sparks_ranking_evaluator(spark):
    from pyspark.ml.evaluation import RankingEvaluator

    rng = random.Random(3)
    rows = [
        (u, rng.sample(range(40), rng.randint(1, 12)), rng.sample(range(40), rng.randint(1, 6))) for u in range(300)
    ]
    recommended = spark.createDataFrame([(u, items) for u, items, _ in rows], "user_idx int, items array<int>")
    relevant = spark.createDataFrame([(u, rel) for u, _, rel in rows], "user_idx int, relevant array<int>")
    ours = ranking_metrics(recommended, relevant, 10)
    as_doubles = spark.createDataFrame(
        [([float(i) for i in items[:10]], [float(i) for i in rel]) for _, items, rel in rows],
        "prediction array<double>, label array<double>",
    )
    for ours_name, spark_name in (("ndcg_at_k", "ndcgAtK"), ("precision_at_k", "precisionAtK"),
                                  ("recall_at_k", "recallAtK"), ("map_at_k", "meanAveragePrecisionAtK")):  # fmt: skip
        theirs = RankingEvaluator(metricName=spark_name, k=10).evaluate(as_doubles)
        assert ours[ours_name] == pytest.approx(theirs, rel=1e-9), ours_name
