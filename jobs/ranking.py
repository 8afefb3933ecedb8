"""Top-N lists that never contain an item the user has already seen, from ALS or popularity.

ALS lists come from one of two engines (``recommend.engine``), both exact:

- ``blocked`` (the default): every user's scores against all items by blocked matrix products in
  Spark tasks, seen items scored -inf before the top n is taken (jobs/topk.py);
- ``subset``: ALSModel.recommendForUserSubset, the built-in. Its candidates arrive as
  ``array<struct<item_idx, score>>`` sorted best first, and excluding the seen items is an
  order-preserving filter. To stay exact, a user who has seen s items is offered at least n + s
  candidates, so after the filter n unseen items are left whenever the catalogue has that many.

Popularity lists are built the subset way, from the popularity ranking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame

    from conf.schema import RunVariant


def seen_items(interactions: DataFrame) -> DataFrame:
    """Per user, the array of item indices they interacted with: user_idx, seen."""
    from pyspark.sql import functions as F

    return interactions.groupBy("user_idx").agg(F.collect_set("item_idx").alias("seen"))


def seen_items_of(interactions: DataFrame, users: DataFrame) -> DataFrame:
    """seen_items of ``interactions`` for the users in ``users`` (a frame with user_idx) only:
    the training items of the holdout users that evaluate and tune rank for."""
    return seen_items(interactions).join(users.select("user_idx"), "user_idx")


def candidate_count_of(n_seen, n: int):
    """Candidates to request for a user who has seen ``n_seen`` items (a column): n + seen,
    rounded up to a power of two so that users fall into a few request sizes (at most twice
    what is needed), each one recommendForUserSubset call."""
    from pyspark.sql import functions as F

    needed = n_seen + F.lit(n)
    return F.pow(F.lit(2), F.ceil(F.log2(F.greatest(needed, F.lit(1))))).cast("int")


def als_candidates(model: ALSModel, seen: DataFrame, n: int) -> DataFrame:
    """ALS candidates per user in ``seen``, enough of them for n unseen: user_idx, candidates."""
    from pyspark.sql import functions as F

    sized = seen.select("user_idx", candidate_count_of(F.size("seen"), n).alias("want"))
    sizes = sorted(row["want"] for row in sized.select("want").distinct().collect())
    parts = [
        model.recommendForUserSubset(sized.where(F.col("want") == size).select("user_idx"), size) for size in sizes
    ]
    if not parts:
        return seen.sparkSession.createDataFrame([], "user_idx int, candidates array<struct<item_idx:int,score:float>>")
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union.select(
        "user_idx",
        F.expr("transform(recommendations, r -> named_struct('item_idx', r.item_idx, 'score', r.rating))").alias(
            "candidates"
        ),
    )


def item_popularity(interactions: DataFrame) -> DataFrame:
    """Number of distinct users per item, as a score: item_idx, score."""
    from pyspark.sql import functions as F

    return interactions.groupBy("item_idx").agg(F.countDistinct("user_idx").cast("double").alias("score"))


def popular_candidates(popularity: DataFrame, seen: DataFrame, n: int) -> DataFrame:
    """The most popular items as candidates for each user in ``seen``: exactly the top n + seen."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    longest = seen.agg(F.max(F.size("seen"))).first()[0] or 0
    order = [F.desc("score"), F.asc("item_idx")]
    top = popularity.orderBy(*order).limit(n + longest)
    ranked = top.select("item_idx", "score", F.row_number().over(Window.orderBy(*order)).alias("pop_rank"))
    wanted = seen.select("user_idx", (F.size("seen") + F.lit(int(n))).alias("want"))
    pairs = wanted.join(F.broadcast(ranked), F.col("pop_rank") <= F.col("want"))
    return collect_ranked(pairs, "user_idx", "pop_rank", ("item_idx", "score"), "candidates")


def collect_ranked(
    frame: DataFrame, key: str | tuple[str, ...], order_col: str, fields: tuple[str, ...], alias: str
) -> DataFrame:
    """One row per ``key`` (a column or several): its rows' ``fields`` as an array of structs,
    in ``order_col`` order."""
    from pyspark.sql import functions as F

    key_columns = (key,) if isinstance(key, str) else key
    ordered = F.array_sort(F.collect_list(F.struct(order_col, *fields)))
    kept = ", ".join(f"'{field}', r.{field}" for field in fields)
    return (
        frame.groupBy(*key_columns)
        .agg(ordered.alias("_ordered"))
        .select(*key_columns, F.expr(f"transform(_ordered, r -> named_struct({kept}))").alias(alias))
    )


def stored_lists(recommendations: DataFrame) -> DataFrame:
    """A run folder's recommendations as lists: variant, user_id, items (array of struct<item_id,
    score>, best first). Read as they are; a run folder from before lists were stored whole
    (one row per rank) is grouped first."""
    if "rank" not in recommendations.columns:
        return recommendations.select("variant", "user_id", "items")
    return collect_ranked(recommendations, ("variant", "user_id"), "rank", ("item_id", "score"), "items")


def stored_rows(recommendations: DataFrame) -> DataFrame:
    """A run folder's recommendations one row per listed item: variant, user_id, rank (1 = best),
    item_id, score, whichever form the run folder holds."""
    from pyspark.sql import functions as F

    if "rank" in recommendations.columns:
        return recommendations.select("variant", "user_id", "rank", "item_id", "score")
    entries = recommendations.select("variant", "user_id", F.posexplode("items").alias("position", "entry"))
    rank = (F.col("position") + 1).cast("int").alias("rank")
    return entries.select("variant", "user_id", rank, "entry.item_id", "entry.score")


ENGINES = ("blocked", "subset")


def als_top_unseen(model: ALSModel, seen: DataFrame, n: int, engine: str) -> DataFrame:
    """The model's top-n unseen items for each user in ``seen`` by ``engine`` (ENGINES):
    user_idx, items (array of struct<item_idx, score>), best first."""
    if engine == "subset":
        return top_unseen(als_candidates(model, seen, n), seen, n)
    if engine != "blocked":
        raise ValueError(f"unknown top-n engine {engine!r}: expected one of {', '.join(ENGINES)}")
    from jobs.topk import unseen_top_n

    return unseen_top_n(model.userFactors, model.itemFactors, seen, n, task_partitions(seen.sparkSession))


def task_partitions(spark) -> int:
    """Partitions for work spread over Spark tasks: the session's shuffle partitions."""
    return max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))


def variant_top(
    variant: RunVariant, model: ALSModel | None, popularity: DataFrame, seen: DataFrame, n: int, engine: str
) -> DataFrame:
    """One variant's top-n unseen items for each user in ``seen``: user_idx, items. ALS variants
    rank by their model with ``engine``; popularity variants by ``popularity`` (item_idx, score)."""
    if variant.model == "popularity":
        return top_unseen(popular_candidates(popularity, seen, n), seen, n)
    return als_top_unseen(model, seen, n, engine)


def top_unseen(candidates: DataFrame, seen: DataFrame, n: int) -> DataFrame:
    """Drop seen items from each user's candidates and keep the best n: user_idx, items."""
    from pyspark.sql import functions as F

    return candidates.join(seen, "user_idx", "left").select(
        "user_idx",
        F.expr(
            f"slice(filter(candidates, c -> seen IS NULL OR NOT array_contains(seen, c.item_idx)), 1, {int(n)})"
        ).alias("items"),
    )
