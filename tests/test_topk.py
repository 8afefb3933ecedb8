"""The blocked top-n engine: exact against a brute-force ranking (ties, -inf, short rows), and
the same lists as recommendForUserSubset on the same model."""

import numpy as np
import pytest

from bench.topn import agree_up_to_ties
from conf.schema import TrainSection
from jobs.ranking import als_top_unseen, seen_items
from jobs.topk import Candidates, group_size, padded_columns, row_top_k, unseen_scores, unseen_top_n
from jobs.train import fit_als


def brute_force_top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """Each row's k best finite columns by a full sort: score descending, then column."""
    lists = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        lists.append([int(c) for c in order[:k] if np.isfinite(row[c])])
    return lists


def ragged(counts, columns) -> list[list[int]]:
    return [part.tolist() for part in np.split(columns, np.cumsum(counts)[:-1])] if len(counts) else []


@pytest.mark.parametrize("seed", range(60))
def test_row_top_k_equals_a_full_sort_with_ties_and_excluded_columns(seed):
    rng = np.random.default_rng(seed)
    rows, items, k = int(rng.integers(1, 30)), int(rng.integers(1, 3000)), int(rng.integers(1, 50))
    # Every group size, also those group_size would not choose (fewer groups than k).
    group = 2 ** (seed % 7)
    scores = np.full((rows, padded_columns(items, group)), -np.inf, np.float32)
    # Odd seeds score on a five-value scale, so that ties, also at the k-th place, are common.
    values = rng.integers(-2, 3, (rows, items)) if seed % 2 else rng.standard_normal((rows, items))
    scores[:, :items] = values
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    counts, columns, found = row_top_k(scores, k, group)
    assert ragged(counts, columns) == brute_force_top_k(scores, k)
    assert np.array_equal(found, scores[np.repeat(np.arange(rows), counts), columns])


def test_group_size_keeps_four_k_groups_and_stays_within_bounds():
    assert group_size(26_744, 100) == 64
    assert group_size(26_744, 1_000) == 4
    assert group_size(300, 20) == 2
    assert group_size(50, 20) == 1


def test_candidate_columns_by_table_and_by_search_agree():
    dense = Candidates.of(np.array([0, 1, 2, 5, 9]), np.ones((5, 2), np.float32), 2)
    sparse = Candidates.of(np.array([0, 1, 2, 5, 10**9]), np.ones((5, 2), np.float32), 2)
    assert dense.column_of is not None and sparse.column_of is None
    asked = np.array([5, 3, 0, 9, -1, 10**9, 2])
    assert dense.columns(asked).tolist() == [3, -1, 0, 4, -1, -1, 2]
    assert sparse.columns(asked).tolist() == [3, -1, 0, -1, -1, 4, 2]


def test_row_top_k_of_rows_with_nothing_left_is_empty():
    scores = np.full((3, 16), -np.inf, np.float32)
    scores[1, 4] = 0.5
    counts, columns, _ = row_top_k(scores, 10, 4)
    assert counts.tolist() == [0, 1, 0] and columns.tolist() == [4]


def test_row_top_k_ranks_rows_tied_everywhere_by_column():
    # A user with all-zero factors scores 0 on every item: every column ties with the floor.
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((4, 4096)).astype(np.float32)
    scores[1] = 0.0
    scores[2, ::2] = -np.inf
    scores[2, 1::2] = 1.0
    counts, columns, _ = row_top_k(scores, 3, 8)
    assert ragged(counts, columns) == brute_force_top_k(scores, 3)
    assert ragged(counts, columns)[1] == [0, 1, 2] and ragged(counts, columns)[2] == [1, 3, 5]


def test_row_top_k_keeps_float64_scores_below_the_float32_range():
    scores = np.array([[-1e300, -2e300, -np.inf, -np.inf]])
    assert ragged(*row_top_k(scores, 2, 1)[:2]) == [[0, 1]]


def test_overflowing_products_are_never_returned():
    candidates = Candidates.of(np.array([0, 1, 2]), np.array([[1e20, 1e20], [1e20, -1e20], [1.0, 0.0]], np.float32), 2)
    users = np.array([[1e20, 1e20], [1.0, 1.0]], np.float32)
    scores = unseen_scores(users, candidates, np.array([], int), np.array([], int))
    counts, columns, values = row_top_k(scores, 2, candidates.group)
    assert np.isfinite(values).all()
    assert ragged(counts, columns) == [[2], [0, 2]], "inf and NaN products are dropped, finite ones kept"


def test_unseen_top_n_without_items_is_empty(spark):
    users, _ = factor_frames(spark, {1: [1.0, 0.0]}, {})
    items = spark.createDataFrame([], "id int, features array<float>")
    seen = spark.createDataFrame([(1, [])], "user_idx int, seen array<int>")
    assert unseen_top_n(users, items, seen, 5, 2).count() == 0


def test_row_top_k_orders_negative_and_positive_scores_alike():
    scores = np.array([[-0.0, 0.0, -1.5, 2.0, -3.0e-38, 1.0e-38, -np.inf, -np.inf]], np.float32)
    _, columns, values = row_top_k(scores, 6, 2)
    assert columns.tolist() == [3, 5, 0, 1, 4, 2], "-0.0 and 0.0 tie and keep column order"
    assert values.tolist() == sorted(values.tolist(), reverse=True)


def factor_frames(spark, users: dict, items: dict):
    schema = "id int, features array<float>"
    return (
        spark.createDataFrame([(key, list(map(float, row))) for key, row in users.items()], schema),
        spark.createDataFrame([(key, list(map(float, row))) for key, row in items.items()], schema),
    )


def lists_of(frame) -> dict[int, list[int]]:
    return {row["user_idx"]: [entry["item_idx"] for entry in row["items"]] for row in frame.collect()}


def test_unseen_top_n_masks_seen_items_and_items_without_finite_factors(spark):
    users, items = factor_frames(
        spark,
        {1: [1.0, 0.0], 2: [0.0, 1.0], 3: [1.0, 1.0], 4: [float("nan"), 1.0]},
        {10: [3.0, 0.0], 11: [2.0, 1.0], 12: [0.0, 3.0], 13: [float("inf"), 0.0], 14: [1.0, 1.0]},
    )
    seen = spark.createDataFrame(
        [(1, [10]), (2, [12, 99]), (3, [10, 11, 12, 14]), (4, [10]), (5, [10])], "user_idx int, seen array<int>"
    )
    found = lists_of(unseen_top_n(users, items, seen, 2, 3))
    assert found == {1: [11, 14], 2: [11, 14], 3: [], 4: []}, (
        "seen items, an unknown seen item (99), item 13 (inf) and user 4 (NaN) are all handled; user 5 has no factors"
    )


def test_unseen_top_n_scores_are_the_factor_products(spark):
    users, items = factor_frames(spark, {7: [0.5, 2.0]}, {1: [1.0, 1.0], 2: [2.0, 0.0], 3: [0.0, 1.0]})
    seen = spark.createDataFrame([(7, [])], "user_idx int, seen array<int>")
    row = unseen_top_n(users, items, seen, 5, 1).first()
    assert [(e["item_idx"], e["score"]) for e in row["items"]] == [(1, 2.5), (3, 2.0), (2, 1.0)]


@pytest.fixture(scope="module")
def trained(spark):
    rng = np.random.default_rng(5)
    rows = [(u, int(i), 1.0) for u in range(120) for i in rng.choice(300, size=int(rng.integers(3, 60)), replace=False)]
    rows += [(500, i, 1.0) for i in range(290)]  # a user who has seen almost everything
    interactions = spark.createDataFrame(rows, "user_idx int, item_idx int, weight double")
    params = {"implicit_prefs": True, "rank": 8, "reg_param": 0.1, "alpha": 5.0, "max_iter": 4, "seed": 2,
              "checkpoint_interval": 2, "weight_transform": "none", "bm25_k1": 100.0, "bm25_b": 0.8,
              "num_user_blocks": 2, "num_item_blocks": 3}  # fmt: skip
    return seen_items(interactions), fit_als(interactions, TrainSection(**params))


def scored_lists_of(frame) -> dict[int, list[tuple[int, float]]]:
    return {row["user_idx"]: [(e["item_idx"], e["score"]) for e in row["items"]] for row in frame.collect()}


def test_blocked_engine_gives_the_same_lists_as_recommend_for_user_subset(trained):
    seen, model = trained
    blocked = scored_lists_of(als_top_unseen(model, seen, 20, "blocked"))
    subset = scored_lists_of(als_top_unseen(model, seen, 20, "subset"))
    assert blocked.keys() == subset.keys() and len(blocked) == 121
    differing = [user for user in blocked if blocked[user] != subset[user]]
    assert all(agree_up_to_ties(blocked[user], subset[user]) for user in differing), differing
    assert len(blocked[500]) == 10, "user 500 has 10 unseen items left"


def test_ties_may_be_ordered_either_way_but_nothing_else_may_differ():
    ranked = [(1, 0.9), (2, 0.5), (3, 0.5), (4, 0.2)]
    assert agree_up_to_ties([(1, 0.9), (3, 0.5), (2, 0.5), (4, 0.2)], ranked)
    assert agree_up_to_ties([(1, 0.9), (2, 0.5), (5, 0.5)], ranked[:3]), "a tie at the cut may keep either"
    assert not agree_up_to_ties([(1, 0.9), (4, 0.5), (3, 0.5), (2, 0.2)], ranked), "items moved across scores"
    assert not agree_up_to_ties([(2, 0.9), (1, 0.9)], [(1, 0.9), (2, 0.8)]), "scores differ place by place"
    assert not agree_up_to_ties(ranked[:3], ranked)
    assert not agree_up_to_ties([(1, 0.9), (1, 0.5)], [(1, 0.9), (2, 0.5)]), "an item twice"
    assert agree_up_to_ties([(1, 1e-9)], [(1, 1.0001e-9)]), "scores near zero compare absolutely"


def test_blocked_engine_matches_a_brute_force_ranking_of_the_factors(trained):
    seen, model = trained
    user_factors = {r["id"]: np.asarray(r["features"], np.float32) for r in model.userFactors.collect()}
    item_rows = sorted((r["id"], r["features"]) for r in model.itemFactors.collect())
    item_ids = np.asarray([item for item, _ in item_rows])
    item_matrix = np.asarray([features for _, features in item_rows], np.float32)
    seen_by_user = {r["user_idx"]: set(r["seen"]) for r in seen.collect()}
    found = scored_lists_of(als_top_unseen(model, seen, 15, "blocked"))
    assert found.keys() == user_factors.keys()
    for user, factors in user_factors.items():
        scores = item_matrix.astype(np.float64) @ factors.astype(np.float64)
        scores[np.isin(item_ids, list(seen_by_user[user]))] = -np.inf
        expected = [(int(item_ids[c]), scores[c]) for c in brute_force_top_k(scores[None, :], 15)[0]]
        # float32 products may order scores equal within rounding either way, nothing else.
        assert agree_up_to_ties(found[user], expected), user


def test_an_unknown_engine_is_refused(trained):
    seen, model = trained
    with pytest.raises(ValueError, match="unknown top-n engine"):
        als_top_unseen(model, seen, 5, "approximate")
