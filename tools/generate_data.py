"""Generate a realistic interactions dataset, deterministically from a seed.

    python -m tools.generate_data --out var/data --interactions 300000 --end-date 2026-11-29
    python -m tools.generate_data --out hdfs:///data/recs --interactions 20000000 --master yarn ...

What it models:
- items with power-law (Zipf) popularity, one or two categories each, titles;
- users with latent tastes: a sparse preference over categories, so that collaborative
  filtering has something popularity cannot see;
- a heavy-tailed number of interactions per user, some repeated (user, item) pairs;
- ratings 1-5 that are higher in a user's favourite categories;
- timestamps spread over a window of days ending at --end-date (never the wall clock);
- items released during the window (NEW_ITEM_SHARE of them), touched only after their
  release, so that cold-start evaluation has items that really were new;
- string ids (``user_0000042``, ``item_000017``).

Rows are generated inside Spark tasks, a slice of users per task, each user from its own
seeded random stream, so the output is the same for any partitioning and nothing is held in
driver memory: 20 million rows need no more driver memory than 20 thousand.

Output: ``<out>/interactions/`` (csv, tsv or parquet), ``<out>/items/`` (csv with header:
item_id, title, categories joined by '|') and ``<out>/_generated.json`` (parameters, counts,
and the bad rows injected with --bad-rows, by the reason prepare should give them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from conf.cli import CommandParser, parse_run_date
from conf.schema import SparkSection
from jobs import storage
from jobs.runner import configure_logging

log = logging.getLogger("recs.generate")

CATEGORY_NAMES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
GLOBAL_DRAW_SHARE = 0.15  # share of a user's interactions that follow global popularity, not taste
TASTE_CONCENTRATION = 0.15  # Dirichlet alpha: smaller means users stick to fewer categories
ZIPF_EXPONENT = 1.05
NEW_ITEM_SHARE = 0.1  # items released during the second half of the window


@dataclass(frozen=True)
class GeneratorParams:
    """Everything the generated data depends on."""

    users: int
    items: int
    interactions: int
    categories: int
    seed: int
    days: int
    end_date: str

    @property
    def end_epoch(self) -> int:
        return int(dt.datetime.combine(dt.date.fromisoformat(self.end_date), dt.time(), dt.UTC).timestamp())


class ItemModel:
    """Item categories and popularity, rebuilt identically from the seed wherever it is needed."""

    def __init__(self, params: GeneratorParams):
        rng = np.random.default_rng([params.seed, 1])
        n, k = params.items, params.categories
        self.primary = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 2.0)))
        second = rng.integers(0, k, size=n)
        self.secondary = np.where((rng.random(n) < 0.3) & (second != self.primary), second, -1)
        ranks = rng.permutation(n)
        popularity = 1.0 / np.power(ranks + 10.0, ZIPF_EXPONENT)
        self.global_cdf = np.cumsum(popularity) / popularity.sum()
        self.by_category = []
        for category in range(k):
            members = np.flatnonzero(self.primary == category)
            weights = popularity[members]
            cdf = np.cumsum(weights) / weights.sum() if len(members) else np.array([])
            self.by_category.append((members, cdf))
        # Seconds into the window at which each item is released: 0 for most, late for new ones.
        window = params.days * 86400
        new = rng.random(n) < NEW_ITEM_SHARE
        self.release = np.where(new, rng.integers(window // 2, window, size=n), 0)


def user_rows(user: int, params: GeneratorParams, items: ItemModel) -> dict[str, np.ndarray]:
    """One user's interactions (item indices, ratings, timestamps), from the user's own stream."""
    rng = np.random.default_rng([params.seed, 2, user])
    k = params.categories
    taste = rng.dirichlet(np.full(k, TASTE_CONCENTRATION))
    mean = params.interactions / params.users
    sigma = 0.9
    count = int(np.rint(np.clip(rng.lognormal(np.log(mean) - sigma**2 / 2, sigma), 3, max(3, params.items // 2))))
    chosen = np.empty(count, dtype=np.int64)
    from_taste = rng.random(count) >= GLOBAL_DRAW_SHARE
    chosen[~from_taste] = np.searchsorted(items.global_cdf, rng.random(int((~from_taste).sum())), side="right")
    categories = rng.choice(k, size=int(from_taste.sum()), p=taste)
    slots = np.flatnonzero(from_taste)
    for category in np.unique(categories):
        members, cdf = items.by_category[category]
        picks = slots[categories == category]
        if len(members) == 0:
            chosen[picks] = np.searchsorted(items.global_cdf, rng.random(len(picks)), side="right")
        else:
            chosen[picks] = members[
                np.searchsorted(cdf, rng.random(len(picks)), side="right").clip(0, len(members) - 1)
            ]
    chosen = chosen.clip(0, params.items - 1)
    affinity = taste[items.primary[chosen]] / taste.max()
    ratings = np.clip(np.rint(2.2 + 2.8 * affinity + rng.normal(0, 0.7, count)), 1, 5)
    window = params.days * 86400
    offsets = rng.integers(0, window, size=count)
    release = items.release[chosen]
    # An interaction with an item before its release moves to a time after it.
    late = offsets < release
    offsets[late] = release[late] + (rng.random(int(late.sum())) * (window - release[late])).astype(np.int64)
    return {"item": chosen, "rating": ratings, "ts": params.end_epoch - window + offsets}


def generate_partition(batches: Iterator, params: GeneratorParams, iso_timestamps: bool) -> Iterator:
    """mapInPandas body: batches of user indices in, their interaction rows out."""
    import pandas as pd

    items = ItemModel(params)
    for batch in batches:
        users, item_idx, ratings, stamps = [], [], [], []
        for user in batch["id"].to_numpy():
            rows = user_rows(int(user), params, items)
            users.append(np.full(len(rows["item"]), user, dtype=np.int64))
            item_idx.append(rows["item"])
            ratings.append(rows["rating"])
            stamps.append(rows["ts"])
        if not users:
            continue
        out = pd.DataFrame(
            {
                "user_id": "user_" + pd.Series(np.concatenate(users)).astype(str).str.zfill(7),
                "item_id": "item_" + pd.Series(np.concatenate(item_idx)).astype(str).str.zfill(6),
                "rating": np.concatenate(ratings).astype("float64"),
                "timestamp": np.concatenate(stamps).astype("int64"),
            }
        )
        if iso_timestamps:
            out["timestamp"] = pd.to_datetime(out["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        yield out


def item_table(params: GeneratorParams) -> list[tuple[str, str, str]]:
    """Item metadata rows: item_id, title, categories ('|'-joined names)."""
    items = ItemModel(params)
    rows = []
    for index in range(params.items):
        names = [CATEGORY_NAMES[items.primary[index] % len(CATEGORY_NAMES)]]
        if items.secondary[index] >= 0:
            names.append(CATEGORY_NAMES[items.secondary[index] % len(CATEGORY_NAMES)])
        rows.append((f"item_{index:06d}", f"Title {index} ({names[0]})", "|".join(names)))
    return rows


# Each bad row kind, named by the reason prepare gives it: (user, item, rating, timestamp) as
# text, with "T" standing for a valid timestamp. Parquet is typed, so some kinds only exist as text.
BAD_ROW_KINDS = {
    "missing_user": ("", "item_000001", "3", "T"),
    "missing_item": ("user_0000001", "", "3", "T"),
    "bad_weight": ("user_0000001", "item_000001", "lots", "T"),
    "negative_weight": ("user_0000001", "item_000001", "-2", "T"),
    "non_finite_weight": ("user_0000001", "item_000001", "NaN", "T"),
    "bad_timestamp": ("user_0000001", "item_000001", "3", "yesterday"),
    "negative_timestamp": ("user_0000001", "item_000001", "3", "-5"),
    "user_id_control_chars": ("user\u00070001", "item_000001", "3", "T"),
    # A malformed line has the wrong number of fields: one where four are expected.
    "malformed_row": ("user_0000001",),
}
TEXT_ONLY_KINDS = ("bad_weight", "bad_timestamp", "malformed_row")
VALID_EPOCH, VALID_ISO, NEGATIVE_ISO = "1700000000", "2023-11-14T22:13:20Z", "1969-12-31T23:59:55Z"


def bad_rows(count: int, fmt: str, iso: bool) -> tuple[list[tuple], dict[str, int]]:
    """``count`` bad rows cycling through the kinds the format can hold, and the count per reason."""
    kinds = [kind for kind in BAD_ROW_KINDS if fmt != "parquet" or kind not in TEXT_ONLY_KINDS]
    rows, expected = [], {}
    for position in range(count):
        kind = kinds[position % len(kinds)]
        row = BAD_ROW_KINDS[kind]
        if len(row) == 4:
            stamp = {"T": VALID_ISO if iso else VALID_EPOCH, "-5": NEGATIVE_ISO if iso else "-5"}.get(row[3], row[3])
            row = (*row[:3], stamp)
        rows.append(row)
        expected[kind] = expected.get(kind, 0) + 1
    return rows, expected


def write_bad_rows(spark, path: str, rows: list[tuple], fmt: str, header: bool, iso: bool) -> None:
    """Add the bad rows to the interactions folder as one extra file of the same format."""
    if not rows:
        return
    if fmt == "parquet":
        typed = [
            (user or None, item, float(rating), stamp if iso else int(stamp)) for user, item, rating, stamp in rows
        ]
        schema = "user_id string, item_id string, rating double, timestamp " + ("string" if iso else "long")
        spark.createDataFrame(typed, schema).coalesce(1).write.mode("append").parquet(path)
        return
    sep = "\t" if fmt == "tsv" else ","
    lines = [sep.join(("user_id", "item_id", "rating", "timestamp"))] if header else []
    lines += [sep.join(row) for row in rows]
    storage.write_text(spark, f"{path}/part-bad-rows.{fmt}", "\n".join(lines) + "\n")


def generate(
    spark, params: GeneratorParams, out: str, fmt: str, header: bool, iso: bool, bad: int, partitions: int
) -> dict:
    """Write interactions, items and _generated.json under ``out``; return the summary written."""
    out = storage.absolute_uri(out).rstrip("/")
    schema = "user_id string, item_id string, rating double, timestamp " + ("string" if iso else "long")
    users = spark.range(0, params.users, numPartitions=partitions)
    rows = users.mapInPandas(lambda batches: generate_partition(batches, params, iso), schema)
    interactions_path = f"{out}/interactions"
    sep = "\t" if fmt == "tsv" else ","
    if fmt == "parquet":
        rows.write.mode("overwrite").parquet(interactions_path)
        good = spark.read.parquet(interactions_path).count()
    else:
        rows.write.mode("overwrite").option("header", header).option("sep", sep).csv(interactions_path)
        good = spark.read.option("header", header).option("sep", sep).csv(interactions_path).count()
    bad_list, expected = bad_rows(bad, fmt, iso)
    write_bad_rows(spark, interactions_path, bad_list, fmt, header, iso)
    items = spark.createDataFrame(item_table(params), "item_id string, title string, categories string")
    items.coalesce(1).write.mode("overwrite").option("header", True).csv(f"{out}/items")
    summary = {
        "params": asdict(params),
        "format": fmt,
        "header": header,
        "timestamps": "iso" if iso else "epoch",
        "interactions": good,
        "bad_rows": {"total": sum(expected.values()), "by_reason": dict(sorted(expected.items()))},
    }
    storage.write_json(spark, f"{out}/_generated.json", summary)
    return summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments of the generator."""
    parser = CommandParser(__doc__, prog="python -m tools.generate_data")
    parser.add_argument("--out", required=True, help="output folder (local path or Hadoop URI)")
    parser.add_argument("--interactions", type=int, default=300_000, help="target number of interactions")
    parser.add_argument("--users", type=int, default=None, help="default: interactions / 40")
    parser.add_argument("--items", type=int, default=None, help="default: interactions / 60, at least 200")
    parser.add_argument("--categories", type=int, default=len(CATEGORY_NAMES))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--end-date", required=True, type=_date_argument, help="last day of the window, YYYY-MM-DD")
    parser.add_argument("--format", choices=("csv", "tsv", "parquet"), default="csv")
    parser.add_argument("--no-header", action="store_true", help="write csv/tsv without a header line")
    parser.add_argument("--timestamps", choices=("epoch", "iso"), default="iso")
    parser.add_argument("--bad-rows", type=int, default=0, help="bad rows to inject (for quarantine demos and tests)")
    parser.add_argument(
        "--partitions", type=int, default=None, help="Spark tasks (default: 1 per 250k rows, at least 2)"
    )
    parser.add_argument("--master", default=None, help="Spark master when run with python -m (default local[*])")
    return parser.parse_args(argv)


def _date_argument(text: str) -> str:
    try:
        return parse_run_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("run date", "end date")) from exc


def params_from_args(args: argparse.Namespace) -> GeneratorParams:
    """Fill in defaults that depend on the requested size."""
    users = args.users or max(50, args.interactions // 40)
    items = args.items or max(200, args.interactions // 60)
    if args.categories > len(CATEGORY_NAMES) or args.categories < 1:
        raise SystemExit(f"--categories must be between 1 and {len(CATEGORY_NAMES)}")
    return GeneratorParams(users, items, args.interactions, args.categories, args.seed, args.days, args.end_date)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the dataset described by the arguments."""
    from jobs.session import spark_session

    configure_logging()
    args = parse_args(argv)
    params = params_from_args(args)
    spark_cfg = SparkSection(
        master=args.master or "local[*]",
        checkpoint_dir="var/spark-checkpoints/generate",
        conf={"spark.sql.session.timeZone": "UTC", "spark.driver.memory": "2g", "spark.ui.showConsoleProgress": False},
    )
    partitions = args.partitions or max(2, args.interactions // 250_000)
    with spark_session(spark_cfg, "recs-generate-data") as spark:
        summary = generate(
            spark,
            params,
            args.out,
            args.format,
            not args.no_header,
            args.timestamps == "iso",
            args.bad_rows,
            partitions,
        )
    log.info(
        "generated %s interactions (+%s bad rows) in %s",
        summary["interactions"],
        summary["bad_rows"]["total"],
        args.out,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
