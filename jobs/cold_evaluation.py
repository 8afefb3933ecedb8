"""How well cold items are reached, measured on items that really were new: a time split where
items first appear in the test period, against random and popularity baselines.

The split: the cut-off is the (1 - evaluate.holdout_fraction) quantile of interaction times.
New items first appear at or after it (and have metadata); training is everything before it.

- exploration: for each user with training history who interacted with new items after the
  cut-off, the new items are ranked by content (cosine between the user's profile, the sum of
  their training items' content vectors, and each new item's vector), by popularity (the
  training popularity of the new item's categories) and at random; hit rate and recall at k
  of the new items the user then interacted with.
- similar items: for each new item and each of its users after the cut-off, the item's k
  nearest warm items by content, the k most popular warm items, and k random warm items;
  precision at k against that user's own training items, averaged over the (item, user) pairs.

Users are sampled (seeded) down to MAX_USERS, so the evaluation stays a small part of the run;
profiles and scores are sparse products, so the vocabulary's size does not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jobs.content import nearest_in

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

MAX_USERS = 5_000
METHODS = ("content", "popularity", "random")


def evaluate_cold_start(
    interactions: DataFrame, items: DataFrame, item_meta: DataFrame, content, holdout_fraction: float, k: int, seed: int
) -> dict:
    """The cold-start figures for the manifest. ``content`` is (item ids, CSR matrix) from
    jobs.content.to_matrix; ``interactions`` are prepared (user_idx, item_idx, ts)."""
    from pyspark.sql import functions as F

    if interactions.where("ts IS NOT NULL").limit(1).count() == 0:
        return {"skipped": "the input has no timestamps, so no item can be seen to appear"}
    cutoff = interactions.approxQuantile("ts", [1.0 - holdout_fraction], 0.001)[0]
    with_ids = interactions.join(items, "item_idx").select("user_idx", "item_id", "ts")
    first_seen = with_ids.groupBy("item_id").agg(F.min("ts").alias("first_seen"))
    content_ids, matrix = content
    row_of = {item: row for row, item in enumerate(content_ids)}
    new_items = {r["item_id"] for r in first_seen.where(F.col("first_seen") >= cutoff).collect()} & set(row_of)
    if not new_items:
        return {"skipped": "no item with metadata first appears after the cut-off", "cutoff": cutoff}
    train = with_ids.where(F.col("ts") < cutoff)
    new_frame = interactions.sparkSession.createDataFrame([(item,) for item in sorted(new_items)], "item_id string")
    test_new = with_ids.where(F.col("ts") >= cutoff).join(F.broadcast(new_frame), "item_id")
    pairs = _user_items(test_new, seed)
    history = _user_items(train.join(test_new.select("user_idx").distinct(), "user_idx"), seed)
    popularity = {r["item_id"]: r["count"] for r in train.groupBy("item_id").count().collect()}
    categories = {r["item_id"]: list(r["categories"]) for r in item_meta.select("item_id", "categories").collect()}
    rng = np.random.default_rng(seed)
    setup = {"cutoff": cutoff, "new_items": len(new_items), "k": k}
    return {
        **setup,
        "exploration": _exploration(pairs, history, sorted(new_items), row_of, matrix, popularity, categories, k, rng),
        "similar_items": _similar(pairs, history, sorted(new_items), row_of, matrix, popularity, k, rng),
    }


def _user_items(frame: DataFrame, seed: int) -> dict[int, set[str]]:
    """user_idx -> the items they interacted with, for at most MAX_USERS users (a seeded sample)."""
    from pyspark.sql import functions as F

    grouped = frame.groupBy("user_idx").agg(F.collect_set("item_id").alias("items"))
    users = grouped.orderBy(F.xxhash64(F.lit(seed), "user_idx")).limit(MAX_USERS).collect()
    return {row["user_idx"]: set(row["items"]) for row in users}


def _exploration(pairs, history, new_items, row_of, matrix, popularity, categories, k, rng) -> dict:
    """Hit rate and recall at k of each method's ranking of the new items, per user."""
    users = [user for user in pairs if history.get(user)]
    if not users:
        return {"users": 0}
    new_rows = np.asarray([row_of[item] for item in new_items])
    category_weight = {}
    for item, count in popularity.items():
        for category in categories.get(item, ()):
            category_weight[category] = category_weight.get(category, 0) + count
    by_popularity = np.asarray([sum(category_weight.get(c, 0) for c in categories.get(item, ())) for item in new_items])
    scores = {"popularity": np.tile(by_popularity.astype(float), (len(users), 1))}
    # Each user's profile is the sum of their training items' vectors: a sparse product.
    profiles = _history_matrix(users, history, row_of, matrix.shape[0]) @ matrix
    scores["content"] = (profiles @ matrix[new_rows].T).toarray()
    scores["random"] = rng.random((len(users), len(new_items)))
    relevant = [pairs[user] for user in users]
    return {"users": len(users), **{method: _hits(scores[method], new_items, relevant, k) for method in METHODS}}


def _history_matrix(users: list[int], history: dict[int, set[str]], row_of: dict[str, int], items: int):
    """users x items, 1 where the user had the item in training (items with metadata only)."""
    from scipy.sparse import csr_matrix

    rows, columns = [], []
    for position, user in enumerate(users):
        for item in history[user]:
            if item in row_of:
                rows.append(position)
                columns.append(row_of[item])
    return csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(users), items))


def _hits(scores: np.ndarray, items: list[str], relevant: list[set[str]], k: int) -> dict:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = [len({items[i] for i in row} & wanted) for row, wanted in zip(top, relevant, strict=True)]
    recall = [hit / min(len(wanted), k) for hit, wanted in zip(hits, relevant, strict=True)]
    return {"hit_rate_at_k": float(np.mean([hit > 0 for hit in hits])), "recall_at_k": float(np.mean(recall))}


def _similar(pairs, history, new_items, row_of, matrix, popularity, k, rng) -> dict:
    """Precision at k of each method's warm items for each new item, against what each of its
    users liked before, averaged over the (item, user) pairs."""
    users_of: dict[str, set[int]] = {}
    for user, items in pairs.items():
        for item in items:
            users_of.setdefault(item, set()).add(user)
    new = set(new_items)
    warm = sorted(item for item in popularity if item in row_of and item not in new)
    if not warm:
        return {"items": 0}
    warm_rows = np.asarray([row_of[item] for item in warm])
    queries = np.asarray([row_of[item] for item in new_items if users_of.get(item)])
    nearest = nearest_in(matrix, queries, warm_rows, k)
    item_of_row = {row: item for item, row in row_of.items()}
    most_popular = sorted(warm, key=lambda item: (-popularity[item], item))[:k]
    precision = {method: [] for method in METHODS}
    for query in queries:
        item = item_of_row[int(query)]
        picks = {
            "content": {item_of_row[row] for row, _ in nearest[int(query)]},
            "popularity": set(most_popular),
            "random": {warm[i] for i in rng.choice(len(warm), size=min(k, len(warm)), replace=False)},
        }
        for user in users_of[item]:
            liked = history.get(user)
            if liked:
                for method, chosen in picks.items():
                    precision[method].append(len(chosen & liked) / k)
    if not precision["content"]:
        return {"items": 0, "pairs": 0}
    figures = {method: {"precision_at_k": float(np.mean(values))} for method, values in precision.items()}
    return {"items": len(queries), "pairs": len(precision["content"]), **figures}
