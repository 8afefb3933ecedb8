"""Exact top-k by blocked matrix products: each Spark task multiplies a block of query rows by
the whole (broadcast) candidate matrix with numpy/BLAS and keeps each row's k best with
vectorized numpy (row_top_k, for both), never a Python loop over pairs.

    nearest_items(item_factors, k)                          # item -> its k most cosine-similar items
    unseen_top_n(user_factors, item_factors, seen, n)       # user -> its n best unseen items

Memory per task is bounded by cutting its rows into sub-blocks of at most BLOCK_CELLS scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Scores one sub-block may hold at once (rows x candidates): 2^24 float32 = 64 MiB; row_top_k
# adds a boolean mask of a quarter of that and candidate arrays of a few hundred per row.
BLOCK_CELLS = 1 << 24

# Most columns per group in row_top_k's first pass (group_size). Bigger groups make that pass
# cheaper and its bound looser; measured at 27k candidates and k=100, 32 to 128 were within 10%
# of each other and twice as fast as 16, while fewer than about 2k groups let the candidates swell.
GROUP = 64

# Rows with more candidates than this many times k are ranked by a full sort (row_top_k), once
# the block has that many per row on average; rows of random scores have about 1.5 times k.
CROWDED_CANDIDATES = 4


def group_size(candidates: int, k: int) -> int:
    """Columns per group for row_top_k over ``candidates`` columns and a top ``k``: the largest
    power of two up to GROUP that leaves at least 4k groups (1 for small catalogues)."""
    size = 1
    while size < GROUP and candidates // (size * 2) >= 4 * k:
        size *= 2
    return size


def padded_columns(count: int, group: int) -> int:
    """The column count row_top_k needs for ``count`` candidates: the next multiple of ``group``."""
    return -(-count // group) * group


def row_top_k(scores: np.ndarray, k: int, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's k highest scores, best first, ties to the lower column: (counts, columns,
    values), with columns and values flat, row after row, counts[i] of them for row i. -inf is
    never returned (rows may hold fewer than k); NaN must not occur (unseen_scores sees to it).
    The column count must be a multiple of ``group`` (group_size; pad with -inf)."""
    rows, width = scores.shape
    groups = width // group
    if rows == 0 or groups == 0 or k <= 0:
        return np.zeros(rows, np.int64), np.empty(0, np.int64), np.empty(0, scores.dtype)
    scores = np.ascontiguousarray(scores)
    lowest = np.finfo(scores.dtype).min
    # Column c belongs to group c % groups. Each of the k groups with the highest maxima holds a
    # score at least the k-th highest maximum, so that maximum bounds the k-th best score from
    # below: only scores at or above it can be in the top k.
    group_max = scores.reshape(rows, group, groups).max(axis=1)
    if k <= groups:
        floor = np.maximum(np.partition(group_max, groups - k, axis=1)[:, groups - k], lowest)
    else:
        floor = np.full(rows, lowest, scores.dtype)
    above = scores >= floor[:, None]
    # A row whose floor is tied by many scores (a user with all-zero factors scores 0 on every
    # item) would swell the candidates; where the block has that many, such rows are ranked
    # one by one instead.
    crowded = np.empty(0, np.int64)
    if np.count_nonzero(above) > CROWDED_CANDIDATES * k * rows:
        crowded = np.flatnonzero(np.count_nonzero(above, axis=1) > CROWDED_CANDIDATES * k)
        above[crowded] = False
    # flatnonzero of the raveled mask is about ten times faster than nonzero of the 2-D one.
    flat = np.flatnonzero(above)
    rows_of, columns = np.divmod(flat, width)
    values = scores.reshape(-1)[flat]
    if len(crowded):
        rows_of, columns, values = _with_crowded_rows(scores, crowded, k, rows_of, columns, values)
    return _best_k_per_row(rows_of, columns, values, rows, k)


def _with_crowded_rows(scores, crowded, k: int, rows_of, columns, values):
    """The candidates with each crowded row's own top k (by a full sort of the row) added."""
    extra_rows, extra_columns = [rows_of], [columns]
    for row in crowded:
        best = np.lexsort((np.arange(scores.shape[1]), -scores[row]))[:k]
        best = best[scores[row, best] > -np.inf]
        extra_rows.append(np.full(len(best), row, rows_of.dtype))
        extra_columns.append(best.astype(columns.dtype))
    rows_of, columns = np.concatenate(extra_rows), np.concatenate(extra_columns)
    return rows_of, columns, scores[rows_of, columns]


def _best_k_per_row(rows_of, columns, values, rows: int, k: int):
    order = _rank_order(rows_of, columns, values, rows)
    rows_of, columns, values = rows_of[order], columns[order], values[order]
    counts = np.bincount(rows_of, minlength=rows)
    position = np.arange(len(rows_of)) - np.repeat(np.cumsum(counts) - counts, counts)
    best = position < k
    return np.minimum(counts, k), columns[best], values[best]


def _rank_order(rows_of, columns, values, rows: int) -> np.ndarray:
    """Order by row, then score descending, then column: one integer sort where the key fits
    64 bits (row bits + 32 + column bits), else lexsort."""
    row_bits, column_bits = int(rows - 1).bit_length(), int(columns.max(initial=0)).bit_length()
    if row_bits + column_bits > 31 or values.dtype != np.float32:
        return np.lexsort((columns, -values, rows_of))
    # IEEE floats order like their bits once negatives have all bits flipped and positives the
    # sign bit set; the complement then orders best first. Adding 0 turns -0.0 into 0.0, which
    # compare equal but differ in bits.
    bits = (values + np.float32(0.0)).view(np.uint32)
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    descending = (~ascending).astype(np.uint64)
    key = (rows_of.astype(np.uint64) << np.uint64(32 + column_bits)) | (descending << np.uint64(column_bits))
    return np.argsort(key | columns.astype(np.uint64))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), so that dot products are cosines."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def nearest_by_cosine(queries: np.ndarray, query_ids: np.ndarray, candidates: np.ndarray, k: int):
    """For each query row (id ``query_ids``; candidate row ids are 0..n-1): the k candidates of
    highest cosine, never the query's own id. Yields (query id, candidate ids, cosines) per row."""
    count = candidates.shape[0]
    group = group_size(count, k)
    unit_candidates = np.zeros((padded_columns(count, group), candidates.shape[1]), np.float32)
    unit_candidates[:count] = unit_rows(candidates)
    rows_per_block = max(1, BLOCK_CELLS // max(1, len(unit_candidates)))
    for start in range(0, len(queries), rows_per_block):
        block_ids = query_ids[start : start + rows_per_block]
        scores = unit_rows(queries[start : start + rows_per_block]) @ unit_candidates.T
        scores[:, count:] = -np.inf
        own = block_ids < count
        scores[np.nonzero(own)[0], block_ids[own]] = -np.inf
        counts, columns, values = row_top_k(scores, k, group)
        ends = np.cumsum(counts)
        for query_id, end, found in zip(block_ids, ends, counts, strict=True):
            yield int(query_id), columns[end - found : end], values[end - found : end]


def nearest_items(item_factors: DataFrame, k: int, partitions: int) -> DataFrame:
    """The k most cosine-similar items of every item by its factors, among the same items:
    item_idx, similar (array of struct<item_idx, score>), best first; an item is never in its
    own list. ``item_factors``: item_idx int, features array<float>. The factor matrix is
    broadcast to every task; the tasks score their share of the items against all of it."""
    schema = "item_idx int, similar array<struct<item_idx:int,score:float>>"
    ids, matrix = factor_matrix(item_factors, "item_idx")
    if not len(ids):
        return item_factors.sparkSession.createDataFrame([], schema)
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


def factor_matrix(factors: DataFrame, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids ascending as int64, their ``features`` rows as a float32 matrix), brought to the
    driver through Arrow: the item side of a model is small enough to broadcast."""
    # Sorted here rather than by orderBy, which would cost Spark a sampling job and a shuffle.
    table = factors.select(id_column, "features").toArrow()
    ids = table.column(id_column).to_numpy().astype(np.int64)
    if not len(ids):
        return ids, np.zeros((0, 0), np.float32)
    flat = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    order = np.argsort(ids, kind="stable")
    return ids[order], flat.astype(np.float32).reshape(len(ids), -1)[order]


@dataclass(frozen=True)
class Candidates:
    """The item side of unseen_top_n, broadcast to every task: item ids ascending, their factors
    as rows padded with zeros to a multiple of ``group`` (row_top_k), the columns never to
    return (the padding, and items whose factors are not finite, so that no NaN reaches
    row_top_k), and a table from item id to column where ids are dense enough for one."""

    ids: np.ndarray
    factors: np.ndarray
    never: np.ndarray
    group: int
    column_of: np.ndarray | None
    largest: float

    @classmethod
    def of(cls, ids: np.ndarray, matrix: np.ndarray, k: int) -> Candidates:
        """The candidates for a top ``k`` over items ``ids`` with factor rows ``matrix``."""
        group = group_size(len(ids), k)
        factors = np.zeros((padded_columns(len(ids), group), matrix.shape[1] if matrix.size else 0), np.float32)
        factors[: len(ids)] = matrix
        broken = ~np.isfinite(factors).all(axis=1)
        factors[broken] = 0.0
        broken[len(ids) :] = True
        column_of = None
        # ALS item ids are the dense indices of prepare, so a lookup table beats a binary search.
        if len(ids) and 0 <= ids[0] and ids[-1] < 4 * len(ids) + 1024:
            column_of = np.full(int(ids[-1]) + 1, -1, np.int64)
            column_of[ids] = np.arange(len(ids))
        largest = float(np.abs(factors).max(initial=0.0))
        return cls(ids, factors, np.flatnonzero(broken), group, column_of, largest)

    def columns(self, items: np.ndarray) -> np.ndarray:
        """Each item id's column, -1 for ids that are not candidates."""
        if self.column_of is not None:
            inside = (items >= 0) & (items < len(self.column_of))
            return np.where(inside, self.column_of[np.clip(items, 0, len(self.column_of) - 1)], -1)
        if not len(self.ids):
            return np.full(len(items), -1, np.int64)
        found = np.minimum(np.searchsorted(self.ids, items), len(self.ids) - 1)
        return np.where(self.ids[found] == items, found, -1)


def unseen_scores(users: np.ndarray, candidates: Candidates, seen_rows, seen_columns) -> np.ndarray:
    """Scores of every candidate for each user row, -inf where the user has seen the item, where
    the column is never to be returned, and in whole rows whose factors are not finite."""
    finite_users = np.isfinite(users).all(axis=1)
    if not finite_users.all():
        users = np.where(finite_users[:, None], users, np.float32(0.0))
    with np.errstate(over="ignore", invalid="ignore"):
        scores = users @ candidates.factors.T
    # Finite factors can still overflow to inf, and inf - inf to NaN; check only when they could.
    largest = float(np.abs(users).max(initial=0.0)) * candidates.largest * users.shape[1]
    if largest >= float(np.finfo(np.float32).max):
        scores[~np.isfinite(scores)] = -np.inf
    scores[:, candidates.never] = -np.inf
    scores[seen_rows, seen_columns] = -np.inf
    scores[~finite_users] = -np.inf
    return scores


def seen_positions(seen, candidates: Candidates, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each seen item of an Arrow list column of item indices, in the
    candidates' columns; items without factors have no column and are skipped."""
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(seen), 0).to_numpy(zero_copy_only=False)
    columns = candidates.columns(pc.list_flatten(seen).to_numpy(zero_copy_only=False).astype(np.int64))
    known = columns >= 0
    return np.repeat(np.arange(rows), lengths)[known], columns[known]


RANKED_SCHEMA = "user_idx int, items array<struct<item_idx:int,score:float>>"


def unseen_top_n(user_factors: DataFrame, item_factors: DataFrame, seen: DataFrame, n: int, partitions: int):
    """Each user's n best items by factor product that they have not seen, best first, ties to
    the lower item_idx: user_idx, items (array of struct<item_idx, score>), for every user in
    ``seen`` (user_idx, seen: array of item_idx) who has factors. ``user_factors`` and
    ``item_factors``: id int, features array<float> (ALSModel.userFactors / itemFactors).
    Exact: seen items are scored -inf before the top n is taken, so a user with many seen
    items needs no extra candidates."""
    from pyspark.sql import functions as F

    ids, matrix = factor_matrix(item_factors, "id")
    if not len(ids):
        return seen.sparkSession.createDataFrame([], RANKED_SCHEMA)
    shared = seen.sparkSession.sparkContext.broadcast(Candidates.of(ids, matrix, n))
    users = user_factors.select(F.col("id").alias("user_idx"), "features")
    users = users.join(seen.select("user_idx", "seen"), "user_idx")

    def rank_partition(batches):
        candidates = shared.value
        rows_per_block = max(1, BLOCK_CELLS // max(1, len(candidates.factors)))
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_block):
                yield ranked_batch(batch.slice(start, rows_per_block), candidates, n)

    return users.repartition(partitions).mapInArrow(rank_partition, RANKED_SCHEMA)


def ranked_batch(batch, candidates: Candidates, n: int):
    """One Arrow batch of user_idx, features, seen ranked: an Arrow batch of user_idx, items."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = batch.num_rows
    features = pc.list_flatten(batch.column("features")).to_numpy(zero_copy_only=False)
    users = features.astype(np.float32).reshape(rows, candidates.factors.shape[1])
    scores = unseen_scores(users, candidates, *seen_positions(batch.column("seen"), candidates, rows))
    counts, columns, values = row_top_k(scores, n, candidates.group)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    entries = pa.StructArray.from_arrays(
        [pa.array(candidates.ids[columns].astype(np.int32)), pa.array(values.astype(np.float32))],
        names=["item_idx", "score"],
    )
    items = pa.ListArray.from_arrays(pa.array(offsets), entries)
    return pa.RecordBatch.from_arrays([batch.column("user_idx"), items], schema=_ranked_schema())


def _ranked_schema():
    import pyarrow as pa

    entry = pa.struct([("item_idx", pa.int32()), ("score", pa.float32())])
    return pa.schema([("user_idx", pa.int32()), ("items", pa.list_(entry))])
