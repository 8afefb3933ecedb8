"""The item-to-item building blocks on edge cases: no candidates, metadata without words,
fewer candidates than k, ties, and agreement with a brute-force check."""

import numpy as np
import pytest

from jobs.content import content_vectors, nearest_in, to_matrix
from jobs.topk import nearest_by_cosine, nearest_items, row_top_k


def test_row_top_k_orders_best_first_and_never_returns_excluded_columns():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [1.0, 1.0, 0.2, -np.inf]], np.float32)
    counts, indices, values = row_top_k(scores, 3, 1)
    assert counts.tolist() == [3, 3]
    assert indices.tolist() == [1, 3, 0, 0, 1, 2]
    assert values.tolist() == pytest.approx([0.9, 0.5, 0.1, 1.0, 1.0, 0.2])
    _, short, _ = row_top_k(np.array([[-np.inf, 0.3]], np.float32), 5, 1)
    assert short.tolist() == [1], "k is cut to the columns there are, -inf never returned"


def test_nearest_by_cosine_matches_brute_force_and_skips_the_item_itself():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(60, 6)).astype(np.float32)
    found = {item: (similar.tolist(), scores) for item, similar, scores in
             nearest_by_cosine(matrix, np.arange(60), matrix, 7)}  # fmt: skip
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    for item in range(60):
        assert found[item][0] == np.argsort(-cosine[item], kind="stable")[:7].tolist()
        assert np.allclose(found[item][1], np.sort(cosine[item])[::-1][:7], atol=1e-5)


def test_nearest_items_of_no_items_is_empty(spark):
    empty = spark.createDataFrame([], "item_idx int, features array<float>")
    assert nearest_items(empty, 5, 2).count() == 0


def test_metadata_without_words_has_no_content_vectors(spark):
    schema = "item_id string, title string, categories array<string>, tags array<string>"
    meta = spark.createDataFrame([("i1", None, [], []), ("i2", "a", [], [])], schema)
    assert content_vectors(meta) is None


def test_content_neighbours_share_words_and_exclude_the_item(spark):
    meta = spark.createDataFrame(
        [("i1", "Space Pirates", ["Sci-Fi"], []), ("i2", "Pirates of Space", ["Sci-Fi"], []),
         ("i3", "Quiet Garden", ["Drama"], ["calm"]), ("i4", "Garden Party", ["Drama", "Comedy"], []),
         ("i5", "Nothing Alike", [], [])],
        "item_id string, title string, categories array<string>, tags array<string>",
    )  # fmt: skip
    ids, matrix = to_matrix(content_vectors(meta))
    assert ids == ["i1", "i2", "i3", "i4", "i5"]
    rows = np.arange(len(ids))
    nearest = nearest_in(matrix, rows, rows, 3)
    assert [ids[row] for row, _ in nearest[0]] == ["i2"], "only i2 shares words with i1"
    assert [ids[row] for row, _ in nearest[2]] == ["i4"]
    assert nearest[4] == [], "no shared word, no neighbour"
    assert all(row != query for query, found in nearest.items() for row, _ in found)
    assert nearest[0][0][1] == pytest.approx(float((matrix[0] @ matrix[1].T).toarray()[0, 0]))
