"""Content vectors of items from their metadata, for items ALS knows too little about.

    vectors = content_vectors(item_meta)            # item_id, features: L2-normalized TF-IDF
    ids, matrix = to_matrix(vectors)                # scipy CSR, one row per item
    nearest_in(matrix, queries, candidates, k)      # cosine top-k by sparse matrix products

The vectors come from Spark ML's own feature transformers (RegexTokenizer, StopWordsRemover,
CountVectorizer, IDF, Normalizer) over an item's title words, its categories and its tags
(``category:`` and ``tag:`` tokens, so that they never collide with title words). The nearest
neighbours are then found on the driver with scipy sparse products in blocks: the catalogue's
vectors must fit in driver memory (a few million items; see the README's limits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Scores one sparse product may hold at once (query rows x candidates): shared category tokens
# make the products nearly dense, so the rows per block shrink as the candidates grow.
BLOCK_CELLS = 1 << 24


def content_vectors(item_meta: DataFrame) -> DataFrame | None:
    """item_id, features: each item's L2-normalized TF-IDF vector over title words, categories
    and tags; None when the metadata holds no words at all (nothing to compare)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import IDF, CountVectorizer, Normalizer, RegexTokenizer, SQLTransformer, StopWordsRemover
    from pyspark.sql import functions as F

    texts = item_meta.select(
        "item_id",
        F.coalesce(F.col("title"), F.lit("")).alias("title"),
        F.transform("categories", lambda c: F.concat(F.lit("category:"), F.lower(c))).alias("category_tokens"),
        F.transform(
            F.coalesce("tags", F.array().cast("array<string>")), lambda t: F.concat(F.lit("tag:"), F.lower(t))
        ).alias("tag_tokens"),
    )
    words = Pipeline(
        stages=[
            RegexTokenizer(inputCol="title", outputCol="title_words", pattern=r"\W+", minTokenLength=2),
            StopWordsRemover(inputCol="title_words", outputCol="title_terms"),
            SQLTransformer(
                statement="SELECT *, concat(title_terms, category_tokens, tag_tokens) AS tokens FROM __THIS__"
            ),
        ]
    )
    tokenized = words.fit(texts).transform(texts).cache()
    if tokenized.where(F.size("tokens") > 0).limit(1).count() == 0:
        return None
    weighting = Pipeline(
        stages=[
            CountVectorizer(inputCol="tokens", outputCol="counts", minDF=1.0),
            IDF(inputCol="counts", outputCol="tfidf"),
            Normalizer(inputCol="tfidf", outputCol="features", p=2.0),
        ]
    )
    return weighting.fit(tokenized).transform(tokenized).select("item_id", "features")


def to_matrix(vectors: DataFrame) -> tuple[list[str], object]:
    """The vectors collected into a scipy CSR matrix, rows in item id order, with the ids."""
    from pyspark.ml.linalg import SparseVector
    from scipy.sparse import csr_matrix

    rows = vectors.orderBy("item_id").collect()
    ids = [row["item_id"] for row in rows]
    size = rows[0]["features"].size if rows else 0
    data, indices, indptr = [], [], [0]
    for row in rows:
        vector = row["features"]
        if isinstance(vector, SparseVector):
            positions, values = vector.indices, vector.values
        else:
            dense = vector.toArray()
            positions = np.nonzero(dense)[0]
            values = dense[positions]
        indices.extend(positions.tolist())
        data.extend(values.tolist())
        indptr.append(len(indices))
    return ids, csr_matrix((np.asarray(data, dtype=np.float64), indices, indptr), shape=(len(ids), size))


def nearest_in(matrix, queries: np.ndarray, candidates: np.ndarray, k: int) -> dict[int, list[tuple[int, float]]]:
    """For each query row of ``matrix`` (rows are unit vectors): up to k candidate rows of
    highest cosine, above 0 and never the query itself, best first (ties: lower row first)."""
    result: dict[int, list[tuple[int, float]]] = {}
    candidate_rows = matrix[candidates]
    rows_per_block = max(1, BLOCK_CELLS // max(1, len(candidates)))
    for start in range(0, len(queries), rows_per_block):
        block = queries[start : start + rows_per_block]
        scores = (matrix[block] @ candidate_rows.T).tocsr()
        for position, query in enumerate(block):
            row = scores.getrow(position)
            columns, values = candidates[row.indices], row.data
            keep = (values > 0) & (columns != query)
            columns, values = columns[keep], values[keep]
            order = np.lexsort((columns, -values))[:k]
            result[int(query)] = [(int(columns[i]), float(values[i])) for i in order]
    return result
