"""Ranking metrics against values computed by hand, and against Spark's RankingEvaluator."""

import math
import random

import pytest

from jobs.metrics import catalog_coverage, per_user_metrics, ranking_metrics

LOG2_3 = math.log2(3)


@pytest.fixture
def recommended(spark):
    return spark.createDataFrame([(1, [10, 20, 30]), (2, [5, 6, 7]), (4, [9])], "user_idx int, items array<int>")


@pytest.fixture
def relevant(spark):
    return spark.createDataFrame([(1, [20, 40]), (2, [5, 7]), (3, [1]), (4, [])], "user_idx int, relevant array<int>")


def test_per_user_values_by_hand(recommended, relevant):
    rows = {r["user_idx"]: r for r in per_user_metrics(recommended, relevant, 3).collect()}
    # user 1: one hit at rank 2 of 3; two relevant items.
    assert rows[1]["precision_at_k"] == pytest.approx(1 / 3)
    assert rows[1]["recall_at_k"] == pytest.approx(1 / 2)
    assert rows[1]["ndcg_at_k"] == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert rows[1]["map_at_k"] == pytest.approx((1 / 2) / 2)
    # user 2: hits at ranks 1 and 3; both relevant items found.
    assert rows[2]["precision_at_k"] == pytest.approx(2 / 3)
    assert rows[2]["recall_at_k"] == pytest.approx(1.0)
    assert rows[2]["ndcg_at_k"] == pytest.approx((1 + 1 / 2) / (1 + 1 / LOG2_3))
    assert rows[2]["map_at_k"] == pytest.approx((1 + 2 / 3) / 2)
    # user 3: relevant items but no recommendations at all.
    assert [rows[3][m] for m in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")] == [0, 0, 0, 0]


def test_means_skip_users_without_relevant_items(recommended, relevant):
    result = ranking_metrics(recommended, relevant, 3)
    assert result["users"] == 3
    assert result["precision_at_k"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert result["recall_at_k"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    ndcg1, ndcg2 = (1 / LOG2_3) / (1 + 1 / LOG2_3), 1.5 / (1 + 1 / LOG2_3)
    assert result["ndcg_at_k"] == pytest.approx((ndcg1 + ndcg2) / 3)
    assert result["map_at_k"] == pytest.approx((0.25 + 5 / 6) / 3)


def test_k_cuts_the_list_and_caps_the_ideal(spark):
    recs = spark.createDataFrame([(1, [1, 2, 3, 4])], "user_idx int, items array<int>")
    truth = spark.createDataFrame([(1, [3, 4, 5])], "user_idx int, relevant array<int>")
    result = ranking_metrics(recs, truth, 2)
    assert result["precision_at_k"] == 0.0 and result["ndcg_at_k"] == 0.0 and result["map_at_k"] == 0.0
    perfect = ranking_metrics(spark.createDataFrame([(1, [3, 4])], "user_idx int, items array<int>"), truth, 2)
    assert perfect["ndcg_at_k"] == pytest.approx(1.0)
    assert perfect["map_at_k"] == pytest.approx(1.0)
    assert perfect["recall_at_k"] == pytest.approx(2 / 3)


def test_coverage_counts_distinct_items_in_top_k(recommended):
    assert catalog_coverage(recommended, 20, 3) == pytest.approx(7 / 20)
    assert catalog_coverage(recommended, 20, 1) == pytest.approx(3 / 20)
    assert catalog_coverage(recommended, 0, 3) == 0.0


def test_precision_and_ndcg_agree_with_spark_ranking_evaluator(spark):
    from pyspark.ml.evaluation import RankingEvaluator

    rng = random.Random(5)
    rows = []
    for user in range(60):
        recs = rng.sample(range(40), 10)
        truth = rng.sample(range(40), rng.randint(1, 12))
        rows.append((user, recs, truth))
    ours = ranking_metrics(
        spark.createDataFrame([(u, r) for u, r, _ in rows], "user_idx int, items array<int>"),
        spark.createDataFrame([(u, t) for u, _, t in rows], "user_idx int, relevant array<int>"),
        5,
    )
    theirs = spark.createDataFrame(
        [([float(x) for x in r], [float(x) for x in t]) for _, r, t in rows],
        "prediction array<double>, label array<double>",
    )
    for metric, name in (("precisionAtK", "precision_at_k"), ("ndcgAtK", "ndcg_at_k"), ("recallAtK", "recall_at_k")):
        expected = RankingEvaluator(metricName=metric, k=5).evaluate(theirs)
        assert ours[name] == pytest.approx(expected), metric
