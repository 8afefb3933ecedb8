"""evaluate's holdout split and recommend's output shaping, on inline DataFrames."""

import pytest
from pyspark.testing import assertDataFrameEqual

from jobs.holdout import mark_holdout
from jobs.ranking import stored_lists, stored_rows
from jobs.recommend import category_popular, item_id_lookup, named_lists, overall_popular


def holdout_items(frame):
    return sorted((r["user_idx"], r["item_idx"]) for r in frame.where("holdout").collect())


def test_holdout_takes_each_users_latest_fraction(spark):
    rows = [(1, item, float(item)) for item in range(1, 6)]  # user 1: five, latest is item 5
    rows += [(2, 10, 1.0), (2, 11, 2.0)]  # user 2: below min_user_interactions
    rows += [(3, 20, 5.0), (3, 21, 9.0), (3, 22, 1.0)]  # user 3: floor(3 * 0.4) = 1
    frame = spark.createDataFrame(
        [(u, i, 1.0, int(t)) for u, i, t in rows], "user_idx int, item_idx int, weight double, ts long"
    )
    marked = mark_holdout(frame, 0.4, 3, seed=1)
    assert holdout_items(marked) == [(1, 4), (1, 5), (3, 21)]
    assert marked.count() == frame.count()


def test_holdout_keeps_at_least_one_and_breaks_ties_reproducibly(spark):
    frame = spark.createDataFrame(
        [(1, i, 1.0, 100) for i in range(4)], "user_idx int, item_idx int, weight double, ts long"
    )
    first = holdout_items(mark_holdout(frame, 0.1, 2, seed=3))
    assert len(first) == 1
    assert holdout_items(mark_holdout(frame.repartition(3), 0.1, 2, seed=3)) == first


def test_holdout_fraction_must_be_a_fraction(spark):
    frame = spark.createDataFrame([(1, 1, 1.0, 1)], "user_idx int, item_idx int, weight double, ts long")
    with pytest.raises(ValueError, match="holdout fraction"):
        mark_holdout(frame, 1.0, 2, seed=1)


def test_named_lists_map_back_to_string_ids_in_order(spark):
    top = spark.createDataFrame(
        [(0, [(3, 0.9), (0, 0.5)]), (1, [(0, 0.7)]), (2, []), (4, None)],
        "user_idx int, items array<struct<item_idx:int,score:float>>",
    )
    users = spark.createDataFrame(
        [("alice", 0), ("9007199254740993", 1), ("empty", 2), ("none", 4)], "user_id string, user_idx int"
    )
    # Indices need not be dense or in id order.
    items = spark.createDataFrame([("sku:a", 0), ("sku:b", 3), ("sku:c", 7)], "item_id string, item_idx int")
    expected = spark.createDataFrame(
        [("v1", "alice", [("sku:b", 0.9), ("sku:a", 0.5)]), ("v1", "9007199254740993", [("sku:a", 0.7)])],
        "variant string, user_id string, items array<struct<item_id:string,score:double>>",
    )
    named = named_lists(top.repartition(3), users, spark.sparkContext.broadcast(item_id_lookup(items)), "v1")
    assertDataFrameEqual(named, expected, rtol=1e-6)
    assert stored_lists(named).schema.simpleString() == expected.schema.simpleString()


@pytest.mark.parametrize("unknown", [5, 9, -1], ids=["in a gap", "past the last", "negative"])
def test_named_lists_refuse_an_index_the_run_does_not_have(spark, unknown):
    top = spark.createDataFrame([(0, [(unknown, 0.9)])], "user_idx int, items array<struct<item_idx:int,score:float>>")
    users = spark.createDataFrame([("alice", 0)], "user_id string, user_idx int")
    items = spark.createDataFrame([("sku:a", 0), ("sku:b", 6)], "item_id string, item_idx int")
    with pytest.raises(Exception, match="not in the run's item index"):
        named_lists(top, users, spark.sparkContext.broadcast(item_id_lookup(items)), "v1").collect()


def test_stored_lists_and_rows_read_both_run_folder_forms(spark):
    lists = spark.createDataFrame(
        [("v1", "alice", [("b", 0.9), ("a", 0.5)]), ("v1", "bob", [("a", 0.7)])],
        "variant string, user_id string, items array<struct<item_id:string,score:double>>",
    )
    rows = spark.createDataFrame(
        [("v1", "alice", 2, "a", 0.5), ("v1", "bob", 1, "a", 0.7), ("v1", "alice", 1, "b", 0.9)],
        "variant string, user_id string, rank int, item_id string, score double",
    )
    assertDataFrameEqual(stored_rows(lists), rows)
    assertDataFrameEqual(stored_rows(rows), rows)
    assertDataFrameEqual(stored_lists(rows), lists)
    assertDataFrameEqual(stored_lists(lists), lists)


@pytest.fixture
def popularity(spark):
    return spark.createDataFrame([(0, 5.0), (1, 9.0), (2, 5.0), (3, 1.0)], "item_idx int, score double")


@pytest.fixture
def items(spark):
    return spark.createDataFrame([("d", 0), ("a", 1), ("c", 2), ("b", 3)], "item_id string, item_idx int")


def test_overall_popular_ranks_by_score_then_id(spark, popularity, items):
    expected = spark.createDataFrame(
        [("all", None, 1, "a", 9.0), ("all", None, 2, "c", 5.0), ("all", None, 3, "d", 5.0)],
        "scope string, category string, rank int, item_id string, score double",
    )
    assertDataFrameEqual(overall_popular(popularity, items, 3), expected)


def test_category_popular_ranks_within_each_category(spark, popularity, items):
    meta = spark.createDataFrame(
        [("a", "A", ["x"]), ("b", "B", ["x", "y"]), ("c", "C", ["y"]), ("d", "D", [])],
        "item_id string, title string, categories array<string>",
    )
    expected = spark.createDataFrame(
        [
            ("category", "x", 1, "a", 9.0),
            ("category", "x", 2, "b", 1.0),
            ("category", "y", 1, "c", 5.0),
            ("category", "y", 2, "b", 1.0),
        ],  # fmt: skip
        "scope string, category string, rank int, item_id string, score double",
    )
    assertDataFrameEqual(category_popular(popularity, items, meta, 2), expected)
