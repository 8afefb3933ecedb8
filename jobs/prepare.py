"""prepare: validate and clean the interactions, aggregate duplicates, build the id maps.

    spark-submit --py-files dist/recs_jobs.zip jobs/prepare.py --run-date 2026-11-29

Rows that cannot be used (missing or unusable ids, unparseable, negative or non-finite weights
and timestamps, malformed lines) go to ``quarantine/interactions`` with a ``reason`` column and
are counted by reason in the stage report. The job fails when they exceed
``prepare.max_bad_fraction`` of the input, and when the input is empty.

Events that the API accepted and export_events wrote to the last ``events.lookback_days`` run
folders join the input log as interactions, weighted by type (``events.weights``), and go
through the same checks.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from conf.quoting import clip
from conf.schema import DUPLICATE_POLICIES, TIMESTAMP_FORMATS
from jobs.export_events import EVENT_COLUMNS
from jobs.run_layout import RunLayout, dated_path
from jobs.runner import JobError, job_main
from jobs.sources import CORRUPT_RECORD, SOURCE_FILE, read_source, reading_input, require_columns
from store.contract import ID_FORBIDDEN_CHARS, MAX_ID_LENGTH

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from conf.schema import Config, ItemsSection

MAX_INDEX = 2**31 - 1  # ALS ids are int32
# Year 3000 in epoch seconds: later values are almost always milliseconds read as seconds.
MAX_EPOCH_SECONDS = 32_503_680_000
QUARANTINE_COLUMNS = (SOURCE_FILE, "raw_record", "user_raw", "item_raw", "weight_raw", "ts_raw", "reason")
# Where a row came from: the input log or the exported events.
LOG, EVENTS = "log", "events"


def standardize_interactions(raw: DataFrame, columns: Mapping[str, str | None]) -> DataFrame:
    """Select the input columns named for each role (user, item, weight, timestamp; the last two
    optional) under fixed text names: user_raw, item_raw, weight_raw, ts_raw."""
    from pyspark.sql import functions as F

    def text(role: str, absent: Column) -> Column:
        return F.col(columns[role]).cast("string") if columns.get(role) else absent

    return raw.select(
        text("user", F.lit(None).cast("string")).alias("user_raw"),
        text("item", F.lit(None).cast("string")).alias("item_raw"),
        text("weight", F.lit("1")).alias("weight_raw"),
        text("timestamp", F.lit(None).cast("string")).alias("ts_raw"),
        F.col(CORRUPT_RECORD).alias("raw_record"),
        F.col(SOURCE_FILE),
    )


def parse_epoch_seconds(text: Column, timestamp_format: str) -> Column:
    """Parse timestamp text to epoch seconds (double; may be NaN, infinite or negative; null if unparseable)."""
    from pyspark.sql import functions as F

    trimmed = F.trim(text)
    numeric = trimmed.try_cast("double")
    iso = F.unix_micros(trimmed.try_cast("timestamp")) / F.lit(1_000_000.0)
    if timestamp_format == "epoch":
        return numeric
    if timestamp_format == "epoch_ms":
        return numeric / F.lit(1000.0)
    if timestamp_format == "iso":
        return iso
    if timestamp_format == "auto":
        # A failed cast to double is slow (an exception per row in the JVM): text that starts like
        # a date (yyyy-) is never a number, so it goes straight to the ISO parser.
        return F.when(trimmed.rlike(r"^\d{4}-"), iso).when(numeric.isNotNull(), numeric).otherwise(iso)
    raise ValueError(f"timestamp format must be one of {', '.join(TIMESTAMP_FORMATS)}, got {timestamp_format!r}")


def id_rejection(column: Column, role: str, max_id_length: int = MAX_ID_LENGTH) -> Column:
    """The quarantine reason for an id column (already trimmed), or null when the id is usable."""
    from pyspark.sql import functions as F

    return (
        F.when(column.isNull() | (column == ""), F.lit(f"missing_{role}"))
        .when(F.length(column) > max_id_length, F.lit(f"{role}_id_too_long"))
        .when(column.rlike(ID_FORBIDDEN_CHARS), F.lit(f"{role}_id_control_chars"))
        # Spark decodes bytes that are not UTF-8 as U+FFFD: caf\xe9 and caf\xe8 would be one id.
        .when(column.contains("\ufffd"), F.lit(f"{role}_id_invalid_utf8"))
    )


def _number_problem(raw: Column, value: Column, name: str, upper_bound: float | None = None) -> Column:
    from pyspark.sql import functions as F

    infinite = value.isin(float("inf"), float("-inf"))
    problem = (
        F.when(raw.isNull() | (F.trim(raw) == ""), F.lit(f"missing_{name}"))
        .when(value.isNull(), F.lit(f"bad_{name}"))
        .when(F.isnan(value) | infinite, F.lit(f"non_finite_{name}"))
        .when(value < 0, F.lit(f"negative_{name}"))
    )
    if upper_bound is not None:
        problem = problem.when(value > F.lit(upper_bound), F.lit(f"{name}_out_of_range"))
    return problem


def validate_interactions(df: DataFrame, timestamp_format: str | None, max_id_length: int = MAX_ID_LENGTH) -> DataFrame:
    """Add parsed user_id, item_id, weight, ts and a ``reason`` (null for good rows) to standardized rows.

    ``timestamp_format`` None means the input has no timestamp column; ts is then null."""
    from pyspark.sql import functions as F

    user, item = F.trim("user_raw"), F.trim("item_raw")
    seconds = F.lit(None).cast("double")
    if timestamp_format is not None:
        seconds = parse_epoch_seconds(F.col("ts_raw"), timestamp_format)
    # Parsed once into columns: every check below reads them, and Spark does not fold repeats of
    # a parse inside the checks' CASE branches (at 20M rows that was a minute of parsing).
    parsed = df.select("*", F.trim("weight_raw").try_cast("double").alias("weight"), seconds.alias("_seconds"))
    weight, seconds = F.col("weight"), F.col("_seconds")
    checks = [
        F.when(F.col("raw_record").isNotNull(), F.lit("malformed_row")),
        id_rejection(user, "user", max_id_length),
        id_rejection(item, "item", max_id_length),
        _number_problem(F.col("weight_raw"), weight, "weight"),
    ]
    if timestamp_format is not None:
        checks.append(_number_problem(F.col("ts_raw"), seconds, "timestamp", MAX_EPOCH_SECONDS))
    return parsed.select(
        *df.columns,
        user.alias("user_id"),
        item.alias("item_id"),
        weight,
        F.when(F.isnan(seconds) | seconds.isin(float("inf"), float("-inf")), None)
        .otherwise(F.floor(seconds))
        .cast("long")
        .alias("ts"),
        F.coalesce(*checks).alias("reason"),
    )


def split_valid(validated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Split validated rows into (clean rows: user_id, item_id, weight, ts) and (quarantine rows)."""
    from pyspark.sql import functions as F

    clean = validated.where(F.col("reason").isNull()).select("user_id", "item_id", "weight", "ts")
    kept = [*QUARANTINE_COLUMNS, *(["origin"] if "origin" in validated.columns else [])]
    quarantine = validated.where(F.col("reason").isNotNull()).select(*kept)
    return clean, quarantine


def raw_text_on_bad_rows_only(validated: DataFrame) -> DataFrame:
    """Validated rows with their raw text (input file, line and fields) kept only where the row
    goes to quarantine: what prepare caches between counting, quarantining and aggregating."""
    from pyspark.sql import functions as F

    # Good rows never need their raw text again; at 20M rows the input file's path alone is
    # gigabytes of cache that spilled to disk.
    bad = F.col("reason").isNotNull()
    raw = [F.when(bad, F.col(name)).alias(name) for name in QUARANTINE_COLUMNS if name != "reason"]
    parsed = [name for name in validated.columns if name not in QUARANTINE_COLUMNS]
    return validated.select(*parsed, "reason", *raw)


def aggregate_pairs(clean: DataFrame, policy: str) -> DataFrame:
    """One row per (user_id, item_id): weight summed (``sum``) or the latest row's (``last``),
    the latest ts, and the number of input events."""
    from pyspark.sql import functions as F

    if policy == "sum":
        weight = F.sum("weight")
    elif policy == "last":
        # Ties in time go to the larger weight, so the result does not depend on row order.
        weight = F.max_by("weight", F.struct(F.coalesce("ts", F.lit(-1)), "weight"))
    else:
        raise ValueError(f"duplicate policy must be one of {', '.join(DUPLICATE_POLICIES)}, got {policy!r}")
    return clean.groupBy("user_id", "item_id").agg(
        weight.alias("weight"), F.max("ts").alias("ts"), F.count(F.lit(1)).cast("int").alias("events")
    )


def build_id_index(ids: DataFrame, id_col: str, index_col: str) -> DataFrame:
    """Map each distinct id to a dense int index, in id order, so the same ids always get the same indices."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # One partition for the numbering: the distinct ids are few next to the interactions
    # (138k users at MovieLens-20M's shape), and it keeps the work in the JVM.
    index = (F.row_number().over(Window.orderBy(id_col)) - 1).cast("int")
    return ids.select(id_col).distinct().select(id_col, index.alias(index_col))


def index_pairs(pairs: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Replace string ids by their int indices: user_idx, item_idx, weight, ts, events."""
    return pairs.join(users, "user_id").join(items, "item_id").select("user_idx", "item_idx", "weight", "ts", "events")


def standardize_item_meta(raw: DataFrame, columns: Mapping[str, str | None], categories_delimiter: str) -> DataFrame:
    """Parse item metadata (columns named for item, title, categories and tags; all but item
    optional) to item_raw, item_id, title, categories and tags (sorted distinct arrays) and a
    ``reason``."""
    from pyspark.sql import functions as F

    item = F.trim(F.col(columns["item"]))
    title = F.col(columns["title"]) if columns.get("title") else F.lit(None).cast("string")
    categories = _delimited_set(columns.get("categories"), categories_delimiter)
    tags = _delimited_set(columns.get("tags"), categories_delimiter)
    reason = F.coalesce(F.when(F.col(CORRUPT_RECORD).isNotNull(), F.lit("malformed_row")), id_rejection(item, "item"))
    return raw.select(
        F.col(columns["item"]).alias("item_raw"),
        item.alias("item_id"),
        title.alias("title"),
        categories.alias("categories"),
        tags.alias("tags"),
        F.col(CORRUPT_RECORD).alias("raw_record"),
        F.col(SOURCE_FILE),
        reason.alias("reason"),
    )


def _delimited_set(column: str | None, delimiter: str) -> Column:
    """A text column split on the delimiter into a sorted array of distinct, trimmed, non-empty
    values; an empty array when the column is not configured."""
    import re

    from pyspark.sql import functions as F

    if not column:
        return F.array().cast("array<string>")
    pieces = F.transform(F.split(F.coalesce(F.col(column), F.lit("")), re.escape(delimiter)), F.trim)
    return F.array_sort(F.array_distinct(F.filter(pieces, lambda value: value != "")))


def mark_duplicate_items(meta: DataFrame) -> DataFrame:
    """Keep the first metadata row of each item id (valid rows first, then by title and
    categories); every later one gets the reason ``duplicate_item``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("item_id").orderBy(F.col("reason").isNotNull(), F.asc_nulls_last("title"), "categories")
    duplicate = F.when(F.row_number().over(order) > 1, F.lit("duplicate_item"))
    return meta.withColumn("reason", F.coalesce(F.col("reason"), duplicate))


def event_interactions(events: DataFrame, weights: Mapping[str, float]) -> DataFrame:
    """Exported events (with the ``source_file`` they were read from) as standardized interaction
    rows, as standardize_interactions gives them: the weight of their type, the time the client
    gave or else the time Redis received them. Types weighted 0 are left out. Timestamps are
    epoch seconds."""
    from pyspark.sql import functions as F

    weight = F.create_map(*[F.lit(value) for pair in weights.items() for value in pair])[F.col("type")]
    seconds = F.coalesce(F.col("ts"), F.unix_micros("received_at") / F.lit(1_000_000.0))
    return events.where(weight > 0).select(
        F.col("user_id").alias("user_raw"),
        F.col("item_id").alias("item_raw"),
        weight.cast("string").alias("weight_raw"),
        seconds.cast("decimal(20,3)").cast("string").alias("ts_raw"),
        F.lit(None).cast("string").alias("raw_record"),
        F.col(SOURCE_FILE),
    )


def exported_event_paths(spark: SparkSession, layout: RunLayout, lookback_days: int) -> list[str]:
    """The events exports (one day each) of this run folder and the ones before it, within the lookback."""
    import datetime as dt

    from jobs import storage

    run_date = dt.date.fromisoformat(layout.run_date)
    paths = []
    for back in range(lookback_days):
        folder = RunLayout(layout.runs_root, (run_date - dt.timedelta(days=back)).isoformat())
        export = storage.read_json(spark, f"{folder.events}/export.json")
        if export:
            paths.append(f"{folder.events}/date={export['day']}")
    return paths


def mark_unknown_event_items(events: DataFrame, known_items: DataFrame) -> DataFrame:
    """Give event rows whose item is neither in the input log nor in the item metadata the
    reason ``unknown_event_item``: events must not bring items into the catalogue."""
    from pyspark.sql import functions as F

    known = known_items.select("item_id").distinct().withColumn("_known", F.lit(True))
    unknown = F.when(F.col("_known").isNull(), F.lit("unknown_event_item"))
    marked = events.join(known, "item_id", "left").withColumn("reason", F.coalesce(F.col("reason"), unknown))
    return marked.select(*events.columns)


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Read the input and the exported events, quarantine bad rows, write prepared interactions
    and id maps; return counts."""
    from pyspark import StorageLevel

    item_meta = _prepare_item_meta(spark, cfg.items, layout)  # first: event items are checked against it
    log, path = _validated_input(spark, cfg, layout)
    events, event_paths = _validated_events(spark, cfg, layout, log, item_meta["enabled"])
    validated = raw_text_on_bad_rows_only(log if events is None else log.unionByName(events))
    validated = validated.persist(StorageLevel.MEMORY_AND_DISK)
    with reading_input(spark, path):
        counts = validated.groupBy("origin", "reason").count().collect()
    by_origin = {LOG: {}, EVENTS: {}}
    for row in counts:
        by_origin[row["origin"]][row["reason"]] = row["count"]
    log_reasons, event_reasons = by_origin[LOG], by_origin[EVENTS]
    rows_read = sum(log_reasons.values())
    if rows_read == 0:
        raise JobError(f"input {clip(path)} has no rows")
    rows_valid, events_valid = log_reasons.pop(None, 0), event_reasons.pop(None, 0)
    reasons = {
        reason: log_reasons.get(reason, 0) + event_reasons.get(reason, 0) for reason in {*log_reasons, *event_reasons}
    }
    clean, quarantine = split_valid(validated)
    quarantine.write.mode("overwrite").parquet(layout.quarantine)
    # Only the input log can fail the run: a flood of bad events must not stop the nightly job.
    _check_bad_fraction(rows_read - rows_valid, rows_read, cfg.prepare.max_bad_fraction, layout.quarantine)

    pairs = aggregate_pairs(clean, cfg.prepare.duplicate_policy).persist(StorageLevel.MEMORY_AND_DISK)
    build_id_index(pairs, "user_id", "user_idx").write.mode("overwrite").parquet(layout.users)
    build_id_index(pairs, "item_id", "item_idx").write.mode("overwrite").parquet(layout.items)
    users, items = spark.read.parquet(layout.users), spark.read.parquet(layout.items)
    _check_index_size(users, items)
    index_pairs(pairs, users, items).write.mode("overwrite").parquet(layout.interactions)
    interactions = spark.read.parquet(layout.interactions)
    report = {
        "input": {"path": path, "rows_read": rows_read, "rows_valid": rows_valid},
        "events": {"exports": event_paths, "rows_read": events_valid + sum(event_reasons.values()),
                   "rows_valid": events_valid, "quarantine_by_reason": dict(sorted(event_reasons.items()))},
        "quarantine": {"rows": sum(reasons.values()), "by_reason": dict(sorted(reasons.items())),
                       "path": layout.quarantine},
        "output": {"pairs": interactions.count(), "users": users.count(), "items": items.count()},
        "item_meta": item_meta,
    }  # fmt: skip
    pairs.unpersist()
    validated.unpersist()
    return report


def _validated_input(spark: SparkSession, cfg: Config, layout: RunLayout) -> tuple[DataFrame, str]:
    """The input log's rows, validated, with origin ``log``; and the path read."""
    from pyspark.sql import functions as F

    source = cfg.input
    path, columns = dated_path(source.path, layout.run_date), source.columns.model_dump()
    raw = read_source(spark, path, source.format, source.delimiter, source.header, source.names)
    require_columns(raw, columns, f"input {path}")
    timestamp_format = source.timestamp_format if columns["timestamp"] else None
    validated = validate_interactions(standardize_interactions(raw, columns), timestamp_format)
    return validated.withColumn("origin", F.lit(LOG)), path


def _validated_events(spark: SparkSession, cfg: Config, layout: RunLayout, log: DataFrame, has_meta: bool):
    """The exported events within the lookback as validated rows with origin ``events`` (None
    without any), items checked against the log and the item metadata; and the exports read."""
    from pyspark.sql import functions as F

    event_paths = exported_event_paths(spark, layout, cfg.events.lookback_days) if cfg.events.enabled else []
    if not event_paths:
        return None, []
    exported = spark.read.schema(EVENT_COLUMNS).parquet(*event_paths)
    exported = exported.select("*", F.col("_metadata.file_path").alias(SOURCE_FILE))
    events = validate_interactions(event_interactions(exported, cfg.events.weights), "epoch")
    known = log.where(F.col("reason").isNull()).select("item_id")
    if has_meta:
        known = known.unionByName(spark.read.parquet(layout.item_meta).select("item_id"))
    return mark_unknown_event_items(events, known).withColumn("origin", F.lit(EVENTS)), event_paths


def _check_bad_fraction(rows_bad: int, rows_read: int, limit: float, quarantine_path: str) -> None:
    if rows_bad / rows_read > limit:
        raise JobError(
            f"{rows_bad} of {rows_read} input rows ({rows_bad / rows_read:.2%}) failed validation, "
            f"above prepare.max_bad_fraction={limit:.2%}; the rejected rows and their reasons are in {quarantine_path}"
        )


def _check_index_size(users: DataFrame, items: DataFrame) -> None:
    for name, frame, column in (("users", users, "user_idx"), ("items", items, "item_idx")):
        largest = frame.agg({column: "max"}).first()[0]
        if largest is not None and largest >= MAX_INDEX:
            raise JobError(f"too many distinct {name} for ALS int32 indices: {largest + 1}")


def _prepare_item_meta(spark: SparkSession, items_cfg: ItemsSection, layout: RunLayout) -> dict:
    from jobs import storage

    if not items_cfg.path:
        storage.delete(spark, layout.item_meta)
        storage.delete(spark, layout.quarantine_items)
        return {"enabled": False}
    path, columns = dated_path(items_cfg.path, layout.run_date), items_cfg.columns.model_dump()
    raw = read_source(spark, path, items_cfg.format, items_cfg.delimiter, items_cfg.header, items_cfg.names)
    require_columns(raw, columns, f"item metadata {path}")
    parsed = standardize_item_meta(raw, columns, items_cfg.categories_delimiter)
    parsed = mark_duplicate_items(parsed).cache()
    with reading_input(spark, path):
        reasons = {row["reason"]: row["count"] for row in parsed.groupBy("reason").count().collect()}
    rejected = parsed.where("reason IS NOT NULL").drop("item_id", "title", "categories", "tags")
    rejected.write.mode("overwrite").parquet(layout.quarantine_items)
    parsed.where("reason IS NULL").select("item_id", "title", "categories", "tags").write.mode("overwrite").parquet(
        layout.item_meta
    )
    parsed.unpersist()
    kept = reasons.pop(None, 0)
    return {
        "enabled": True,
        "rows_read": kept + sum(reasons.values()),
        "rows_quarantined": sum(reasons.values()),
        "quarantine_by_reason": dict(sorted(reasons.items())),
        "items": kept,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the prepare stage for one logical date."""
    return job_main("prepare", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
