"""Exact top-k by blocked matrix products: each Spark task multiplies a block of query rows by
the whole (broadcast) candidate matrix with numpy/BLAS and keeps each row's k best by
argpartition, never a Python loop over pairs.

    nearest_items(item_factors, k)      # item -> its k most cosine-similar items (ALS factors)

Memory per task is bounded by cutting its rows into sub-blocks of at most BLOCK_CELLS scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Scores one sub-block may hold at once (rows x candidates): 2^24 float32 = 64 MiB; with the
# negated copy and argpartition's int64 indices a task peaks at about four times that.
BLOCK_CELLS = 1 << 24


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k highest scores and their column indices, best first; among equal scores
    kept, the lower index first (which of several items tied for the k-th place is kept is not
    defined). Columns scored -inf are never returned; rows may then hold fewer than k."""
    k = min(k, scores.shape[1])
    if k == 0:
        empty = np.empty((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(scores.dtype)
    candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    chosen = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -chosen), axis=1)
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(chosen, order, axis=1)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), so that dot products are cosines."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def nearest_by_cosine(queries: np.ndarray, query_ids: np.ndarray, candidates: np.ndarray, k: int):
    """For each query row (id ``query_ids``; candidate row ids are 0..n-1): the k candidates of
    highest cosine, never the query's own id. Yields (query id, candidate ids, cosines) per row."""
    rows_per_block = max(1, BLOCK_CELLS // max(1, candidates.shape[0]))
    unit_candidates = unit_rows(candidates).T
    for start in range(0, len(queries), rows_per_block):
        block_ids = query_ids[start : start + rows_per_block]
        scores = unit_rows(queries[start : start + rows_per_block]) @ unit_candidates
        own = block_ids < scores.shape[1]
        scores[np.nonzero(own)[0], block_ids[own]] = -np.inf
        indices, values = top_k_rows(scores, k)
        for row, query_id in enumerate(block_ids):
            keep = np.isfinite(values[row])
            yield int(query_id), indices[row][keep], values[row][keep]


def nearest_items(item_factors: DataFrame, k: int, partitions: int) -> DataFrame:
    """The k most cosine-similar items of every item by its factors, among the same items:
    item_idx, similar (array of struct<item_idx, score>), best first; an item is never in its
    own list. ``item_factors``: item_idx int, features array<float>. The factor matrix is
    broadcast to every task; the tasks score their share of the items against all of it."""
    schema = "item_idx int, similar array<struct<item_idx:int,score:float>>"
    rows = item_factors.select("item_idx", "features").orderBy("item_idx").collect()
    if not rows:
        return item_factors.sparkSession.createDataFrame([], schema)
    ids = np.asarray([row["item_idx"] for row in rows], dtype=np.int64)
    matrix = np.asarray([row["features"] for row in rows], dtype=np.float32)
    shared = item_factors.sparkSession.sparkContext.broadcast((ids, matrix))

    def score_partition(batches):
        import pyarrow as pa

        all_ids, all_factors = shared.value
        for batch in batches:
            queries = np.searchsorted(all_ids, batch.column("item_idx").to_numpy(zero_copy_only=False))
            out_ids, out_similar = [], []
            for position, similar, scores in nearest_by_cosine(all_factors[queries], queries, all_factors, k):
                out_ids.append(int(all_ids[position]))
                pairs = zip(all_ids[similar].tolist(), scores.tolist(), strict=True)
                out_similar.append([{"item_idx": item, "score": score} for item, score in pairs])
            yield pa.RecordBatch.from_pydict({"item_idx": out_ids, "similar": out_similar}, schema=_similar_schema())

    return item_factors.select("item_idx").repartition(partitions).mapInArrow(score_partition, schema)


def _similar_schema():
    import pyarrow as pa

    entry = pa.struct([("item_idx", pa.int32()), ("score", pa.float32())])
    return pa.schema([("item_idx", pa.int32()), ("similar", pa.list_(entry))])
