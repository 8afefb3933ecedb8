"""Top-N engines side by side on one model: the blocked engine, recommendForUserSubset (both
with exact seen-item exclusion) and the bare matrix-product floor, plus a brute-force check.

    python -m bench --only topn
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def agree_up_to_ties(
    found: list[tuple[int, float]], expected: list[tuple[int, float]], rtol: float = 1e-5, atol: float = 1e-7
) -> bool:
    """Whether two best-first (item, score) lists are the same ranking: no item twice, the same
    scores place by place (within ``rtol`` and ``atol``: float32 sums differ in the last bits by
    summation order), and the same items except in runs of tied scores, whose order (and, in
    the run at the cut, whose members) an engine may choose."""
    if len(found) != len(expected) or len({item for item, _ in found}) != len(found):
        return False
    if not found:
        return True
    found_scores = np.asarray([score for _, score in found], np.float64)
    expected_scores = np.asarray([score for _, score in expected], np.float64)
    tolerance = rtol * np.abs(expected_scores) + atol
    if not np.all(np.abs(found_scores - expected_scores) <= tolerance):
        return False
    start = 0
    for end in range(1, len(found) + 1):
        if end == len(found) or expected_scores[end] < expected_scores[start] - tolerance[start]:
            if end < len(found) and {i for i, _ in found[start:end]} != {i for i, _ in expected[start:end]}:
                return False
            start = end
    return True


# MovieLens-20M's shape: users, items, interactions; rank and n are the shipped train.rank and
# recommend.top_n.
ML20M_SHAPE = {"users": 138_493, "items": 26_744, "interactions": 20_000_263}
CHECKED_USERS = 200


def synthetic_seen(spark, users: int, items: int, interactions: int, seed: int):
    """user_idx, seen for ``users`` users with about ``interactions`` items in all: per-user
    counts log-normal from 20 up (MovieLens keeps users with at least 20 ratings), items drawn
    with a popularity skew; built in Spark, never on the driver."""
    from pyspark.sql import functions as F

    mean_extra = max(1.0, interactions / users - 20)
    # exp(mu + sigma^2 / 2) is the log-normal mean; sigma 1.2 gives a long tail of heavy users.
    sigma = 1.2
    mu = float(np.log(mean_extra)) - sigma**2 / 2
    counts = spark.range(users).select(
        F.col("id").cast("int").alias("user_idx"),
        F.least(F.lit(items // 2), (F.lit(20) + F.exp(F.randn(seed) * sigma + mu)).cast("int")).alias("count"),
    )
    drawn = counts.select("user_idx", F.explode(F.sequence(F.lit(1), "count")).alias("draw"))
    picked = drawn.select("user_idx", (F.pow(F.rand(seed + 1), F.lit(2.0)) * items).cast("int").alias("item_idx"))
    return picked.groupBy("user_idx").agg(F.collect_set("item_idx").alias("seen"))


def synthetic_model(spark, folder: str, users: int, items: int, rank: int, seed: int):
    """An ALSModel of the given shape with random factors: a tiny model of that rank is fitted
    and saved, and its factor tables are replaced by generated ones before it is loaded, so
    that every engine ranks with the same model without a 20M-interaction fit."""
    from pyspark.ml.recommendation import ALS, ALSModel
    from pyspark.sql import functions as F

    tiny = spark.createDataFrame([(0, 0, 1.0), (1, 1, 1.0)], "user_idx int, item_idx int, weight double")
    ALS(rank=rank, maxIter=1, userCol="user_idx", itemCol="item_idx", ratingCol="weight", seed=seed).fit(
        tiny
    ).write().overwrite().save(folder)

    def factors(count: int, offset: int):
        # Spark seeds each partition with seed + partition index: seeds 1,000 apart keep the
        # columns' streams apart.
        features = F.array(*[(F.randn(seed + offset + 1_000 * j) * 0.1).cast("float") for j in range(rank)])
        return spark.range(count).select(F.col("id").cast("int").alias("id"), features.alias("features"))

    factors(users, 0).write.mode("overwrite").parquet(f"{folder}/userFactors")
    factors(items, 500).write.mode("overwrite").parquet(f"{folder}/itemFactors")
    return ALSModel.load(folder)


def timed_write(frame, path: str | None) -> float:
    """Seconds to compute ``frame`` and write it as Parquet to ``path``, or with ``path`` None
    only to compute it (Spark's noop sink)."""
    started = time.monotonic()
    if path is None:
        frame.write.format("noop").mode("overwrite").save()
    else:
        frame.write.mode("overwrite").parquet(path)
    return time.monotonic() - started


def product_floor_seconds(user_matrix: np.ndarray, item_matrix: np.ndarray) -> float:
    """The floor: every user's scores against every item by blocked float32 matrix products
    (numpy/BLAS on all cores), with no masking, no top-n and no Spark."""
    from jobs.topk import BLOCK_CELLS

    rows = max(1, BLOCK_CELLS // max(1, len(item_matrix)))
    transposed = np.ascontiguousarray(item_matrix.T)
    started = time.monotonic()
    for start in range(0, len(user_matrix), rows):
        user_matrix[start : start + rows] @ transposed
    return time.monotonic() - started


def brute_force_check(spark, model, seen, found, n: int, users: int) -> dict:
    """Lists of ``users`` sampled users against a float64 full sort of all items' scores, seen
    items removed: how many agree exactly, and how many only up to tied scores."""
    from pyspark.sql import functions as F

    from jobs.topk import factor_matrix

    sample = seen.orderBy(F.xxhash64("user_idx")).limit(users).cache()
    user_ids, user_matrix = factor_matrix(
        model.userFactors.join(sample.select(F.col("user_idx").alias("id")), "id"), "id"
    )
    item_ids, item_matrix = factor_matrix(model.itemFactors, "id")
    seen_of = {row["user_idx"]: row["seen"] for row in sample.collect()}
    lists = {row["user_idx"]: [(e["item_idx"], e["score"]) for e in row["items"]]
             for row in found.join(sample.select("user_idx"), "user_idx").collect()}  # fmt: skip
    exact = ties = 0
    for user, factors in zip(user_ids.tolist(), user_matrix.astype(np.float64), strict=True):
        scores = item_matrix.astype(np.float64) @ factors
        scores[np.isin(item_ids, seen_of[user])] = -np.inf
        order = np.lexsort((item_ids, -scores))[:n]
        expected = [(int(item_ids[c]), float(scores[c])) for c in order if np.isfinite(scores[c])]
        got = lists.get(user, [])
        exact += [item for item, _ in got] == [item for item, _ in expected]
        ties += [item for item, _ in got] != [item for item, _ in expected] and agree_up_to_ties(got, expected)
    sample.unpersist()
    return {"users": len(user_ids), "identical": exact, "identical_up_to_ties": ties}


def engines_agree(spark, blocked_path: str, subset_path: str) -> dict:
    """All users' lists of the two engines: how many differ in items, and whether every such
    difference is only an order among tied scores."""
    from pyspark.sql import functions as F

    blocked = spark.read.parquet(blocked_path).withColumnRenamed("items", "blocked")
    subset = spark.read.parquet(subset_path).withColumnRenamed("items", "subset")
    both = blocked.join(subset, "user_idx", "full_outer")
    blocked_items = F.transform("blocked", lambda entry: entry["item_idx"])
    subset_items = F.transform("subset", lambda entry: entry["item_idx"])
    differing = both.where(~F.coalesce(blocked_items == subset_items, F.lit(False))).collect()
    unexplained = sum(
        1
        for row in differing
        if not agree_up_to_ties(
            [(e["item_idx"], e["score"]) for e in row["blocked"] or []],
            [(e["item_idx"], e["score"]) for e in row["subset"] or []],
        )
    )
    return {"users": both.count(), "differing": len(differing), "differing_beyond_ties": unexplained}


def bench_shape(spark, label: str, model, seen, n: int, repeats: int, reference_repeats: int, folder) -> dict:
    """One model and its seen items: the blocked engine's and the floor's time (median of
    ``repeats``), recommendForUserSubset with and without exclusion (of ``reference_repeats``,
    they take minutes at 20M), and the checks."""
    from pyspark.sql import functions as F

    from jobs.ranking import als_top_unseen
    from jobs.topk import factor_matrix

    seen = seen.cache()
    users = seen.count()
    seconds = {"blocked_computed": [], "blocked": [], "subset": [], "raw_subset_no_exclusion": []}
    for repeat in range(repeats):
        print(f"    top-n {label}, repeat {repeat + 1}/{repeats}")
        seconds["blocked_computed"].append(timed_write(als_top_unseen(model, seen, n, "blocked"), None))
        seconds["blocked"].append(timed_write(als_top_unseen(model, seen, n, "blocked"), f"{folder}/blocked"))
        if repeat < reference_repeats:
            seconds["subset"].append(timed_write(als_top_unseen(model, seen, n, "subset"), f"{folder}/subset"))
            raw = model.recommendForUserSubset(seen.select("user_idx"), n)
            seconds["raw_subset_no_exclusion"].append(timed_write(raw, f"{folder}/raw"))
    _, user_matrix = factor_matrix(model.userFactors.join(seen.select(F.col("user_idx").alias("id")), "id"), "id")
    _, item_matrix = factor_matrix(model.itemFactors, "id")
    floor = [product_floor_seconds(user_matrix, item_matrix) for _ in range(repeats)]
    medians = {name: statistics.median(values) for name, values in {**seconds, "product_floor": floor}.items()}
    found = spark.read.parquet(f"{folder}/blocked")
    result = {
        "users": users,
        "items": len(item_matrix),
        "rank": int(item_matrix.shape[1]),
        "n": n,
        "seen_items": seen.select(F.sum(F.size("seen"))).first()[0],
        "seconds": {
            name: {"median": round(medians[name], 3), "runs": [round(v, 3) for v in values]}
            for name, values in {**seconds, "product_floor": floor}.items()
        },  # fmt: skip
        "users_per_second": {name: round(users / value) for name, value in medians.items() if value > 0},
        "speedup_over_subset": round(medians["subset"] / medians["blocked"], 2),
        "times_floor": round(medians["blocked_computed"] / medians["product_floor"], 2),
        "brute_force": brute_force_check(spark, model, seen, found, n, CHECKED_USERS),
        "engines": engines_agree(spark, f"{folder}/blocked", f"{folder}/subset"),
    }
    seen.unpersist()
    return result


def bench_topn(shapes: list[str], repeats: int, work, trained_model) -> dict:
    """The top-n engines at each shape: ``1m`` ranks with the model the 1M benchmark run trained
    (``trained_model`` returns it with that run's seen items), ``20m`` with random factors of
    MovieLens-20M's shape and synthetic seen items."""
    from conf import load_config
    from jobs.session import spark_session

    cfg = load_config(environ={})
    results = {}
    with spark_session(cfg.spark, "recs-bench-topn") as spark:
        for shape in shapes:
            folder = str(work / f"topn-{shape}")
            if shape == "1m":
                model, seen = trained_model(spark)
            else:
                dims = ML20M_SHAPE
                model = synthetic_model(spark, f"{folder}/model", dims["users"], dims["items"], cfg.train.rank, 7)
                seen = synthetic_seen(spark, dims["users"], dims["items"], dims["interactions"], 7)
            # The subset engine takes about 6 minutes at the 20M shape: measured once there.
            reference_repeats = repeats if shape == "1m" else 1
            n = cfg.recommend.top_n
            results[shape] = bench_shape(spark, shape, model, seen, n, repeats, reference_repeats, folder)
    return results


def markdown(results: dict) -> list[str]:
    """The top-n tables."""
    lines = []
    for shape, r in results.items():
        source = "the benchmark run's trained model" if shape == "1m" else "random factors, synthetic seen items"
        lines += [
            f"## Top-{r['n']} per user, {r['users']:,} users x {r['items']:,} items, rank {r['rank']}, "
            f"{r['seen_items']:,} seen items ({source})",
            "",
            "| engine | median s | runs | users/s |",
            "|---|---:|---:|---:|",
        ]
        names = {
            "blocked": "blocked products, seen masked (`engine: blocked`), written",
            "subset": "recommendForUserSubset, n + seen candidates, filtered (`engine: subset`), written",
            "raw_subset_no_exclusion": "reference: raw recommendForUserSubset(n), no exclusion, written",
            "blocked_computed": "blocked, computed only (Spark's noop sink)",
            "product_floor": "floor: numpy float32 matrix products only, driver, no Spark, nothing kept",
        }
        for name, label in names.items():
            if name not in r["seconds"]:  # results of an earlier version of this benchmark
                continue
            timing = r["seconds"][name]
            lines.append(f"| {label} | {timing['median']} | {len(timing['runs'])} | {r['users_per_second'][name]:,} |")
        check, engines = r["brute_force"], r["engines"]
        lines += [
            "",
            f"Written to Parquet, blocked is {r['speedup_over_subset']}x as fast as the subset engine (target 4x); "
            f"computed only, it takes {r['times_floor']}x the product floor's time (target at most 2x). "
            f"Brute-force check of {check['users']} users: {check['identical']} identical, "
            f"{check['identical_up_to_ties']} identical up to the order of tied scores. "
            f"Engines over all {engines['users']:,} users: {engines['differing']} lists differ, "
            f"{engines['differing_beyond_ties']} beyond tied scores.",
            "",
        ]
    return lines
