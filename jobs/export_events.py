"""export_events: copy the events of the day before the run date from the Redis stream into the
run folder as Parquet, trim what complete exports cover, and record each experiment's report.

    spark-submit --py-files dist/recs_jobs.zip jobs/export_events.py --run-date 2026-11-30

The day is the window [run date - 1, run date) on the Redis clock, which stamps every stream
entry with the time it was received. Spark tasks read it in ``events.export_slices`` slices in
parallel, so no day passes through the driver. Output: ``events/date=<day>/`` (Parquet) and
``events/export.json`` (rows, whether the day had ended when it was read); prepare reads the
exports of the last ``events.lookback_days`` run folders as interactions.

Re-running a date reads the same entries again, so a complete day gives the same rows. Entries
are trimmed from Redis only after they are exported, and only up to the end of the last day
that every export before it covers completely, so nothing is trimmed that a run folder does
not hold. A complete day already trimmed is kept as it is on a re-run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TYPE_CHECKING

from jobs import storage
from jobs.run_layout import RunLayout
from jobs.runner import JobError, job_main
from store.connection import RedisSettings, connect, writer_settings
from store.contract import KeyLayout
from store.experiment_report import experiment_report

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from conf.schema import Config

log = logging.getLogger("recs.export_events")
EVENT_COLUMNS = (
    "event_id string, received_at timestamp, user_id string, item_id string, type string, ts double, "
    "rec_id string, experiment string, variant string, counted boolean"
)
DAY_MS = 86_400_000


def export_day(run_date: str) -> dt.date:
    """The day a run date exports: the one before it."""
    return dt.date.fromisoformat(run_date) - dt.timedelta(days=1)


def day_window_ms(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in epoch milliseconds, the unit of stream ids."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    return start, start + DAY_MS


def slice_bounds(start_ms: int, end_ms: int, slices: int) -> list[tuple[int, int]]:
    """The window cut into ``slices`` consecutive [start, end) pieces that cover it exactly."""
    step = -(-(end_ms - start_ms) // slices)
    return [(low, min(low + step, end_ms)) for low in range(start_ms, end_ms, step)]


def read_stream(spark: SparkSession, settings: RedisSettings, stream: str, bounds: list[tuple[int, int]]) -> DataFrame:
    """The stream entries received in each [start, end) millisecond slice, read by Spark tasks:
    EVENT_COLUMNS, one row per entry."""
    slices = spark.createDataFrame(bounds, "start_ms long, end_ms long").repartition(len(bounds))

    def read_slices(batches):
        import pyarrow as pa

        from store.connection import connect

        client = connect(settings)
        try:
            for batch in batches:
                for start_ms, end_ms in zip(batch.column("start_ms").to_pylist(), batch.column("end_ms").to_pylist(),
                                            strict=True):  # fmt: skip
                    for rows in _entries(client, stream, start_ms, end_ms):
                        yield pa.RecordBatch.from_pylist(rows, schema=_arrow_schema())
        finally:
            client.close()

    return slices.mapInArrow(read_slices, EVENT_COLUMNS)


def _entries(client, stream: str, start_ms: int, end_ms: int, count: int = 5000):
    """Stream entries in [start_ms, end_ms) as row dicts, a batch at a time (XRANGE, exclusive end)."""
    low, high = f"{start_ms}-0", f"({end_ms}-0"
    while True:
        entries = client.xrange(stream, min=low, max=high, count=count)
        if not entries:
            return
        yield [_row(entry_id, fields) for entry_id, fields in entries]
        low = f"({_text(entries[-1][0])}"


def _row(entry_id, fields: dict) -> dict:
    text = {_text(key): _text(value) for key, value in fields.items()}
    event_id = _text(entry_id)
    return {
        "event_id": event_id,
        "received_at": dt.datetime.fromtimestamp(int(event_id.split("-")[0]) / 1000, dt.UTC),
        "user_id": text.get("user_id"),
        "item_id": text.get("item_id"),
        "type": text.get("type"),
        "ts": float(text["ts"]) if text.get("ts") else None,
        "rec_id": text.get("rec_id") or None,
        "experiment": text.get("experiment") or None,
        "variant": text.get("variant") or None,
        "counted": text.get("counted") == "1",
    }


def _arrow_schema():
    import pyarrow as pa

    return pa.schema(
        [("event_id", pa.string()), ("received_at", pa.timestamp("us", tz="UTC")), ("user_id", pa.string()),
         ("item_id", pa.string()), ("type", pa.string()), ("ts", pa.float64()), ("rec_id", pa.string()),
         ("experiment", pa.string()), ("variant", pa.string()), ("counted", pa.bool_())]
    )  # fmt: skip


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Export the day's events, trim what complete exports cover, write experiment reports."""
    if not cfg.events.enabled:
        # Left as it is: once trimmed from Redis, a day's export is the only copy of its events.
        return {"enabled": False}
    day = export_day(layout.run_date)
    keys, settings = KeyLayout(cfg.store.key_prefix), writer_settings(cfg.store, client_name="recs-export")
    client = connect(settings)
    try:
        report = _export(spark, client, keys, settings, layout, day, cfg.events.export_slices)
        report["trimmed_before"] = _trim_exported(spark, client, keys, layout)
        report["experiments"] = _write_experiment_reports(spark, client, keys, cfg, layout)
    finally:
        client.close()
    return report


def _export(spark, client, keys: KeyLayout, settings: RedisSettings, layout: RunLayout, day: dt.date, slices: int):
    start_ms, end_ms = day_window_ms(day)
    target, record = f"{layout.events}/date={day.isoformat()}", f"{layout.events}/export.json"
    trimmed_before = int(_text(client.get(keys.events_trimmed_before)) or 0)
    existing = storage.read_json(spark, record)
    if trimmed_before > start_ms:
        if existing and existing.get("complete"):
            log.info("events of %s were exported and trimmed already; keeping %s", day, target)
            return {**existing, "status": "kept"}
        raise JobError(
            f"events of {day} were trimmed from Redis but {record} does not hold a complete export of them; "
            "restore that run folder's events/ from a copy"
        )
    redis_now_ms = _redis_now_ms(client)
    storage.delete(spark, record)  # an export being rewritten is not complete until the record says so again
    rows = read_stream(spark, settings, keys.events_stream, slice_bounds(start_ms, end_ms, slices))
    rows.write.mode("overwrite").parquet(target)
    written = spark.read.parquet(target)
    by_type = {row["type"]: row["count"] for row in written.groupBy("type").count().collect()}
    export = {
        "day": day.isoformat(),
        "rows": sum(by_type.values()),
        "by_type": dict(sorted(by_type.items())),
        "path": target,
        # A day still under way on the Redis clock may get more events: not trimmed, re-run later.
        "complete": redis_now_ms >= end_ms,
    }
    storage.write_json(spark, record, export)
    return {**export, "status": "exported"}


def _redis_now_ms(client) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _trim_exported(spark, client, keys: KeyLayout, layout: RunLayout) -> int | None:
    """Trim the stream up to the end of the last day that complete exports cover without a gap,
    from the oldest entry on; return the new boundary (epoch ms), or None when nothing is trimmed."""
    first = client.xrange(keys.events_stream, count=1)
    if not first:
        return None
    day = dt.datetime.fromtimestamp(int(_text(first[0][0]).split("-")[0]) / 1000, dt.UTC).date()
    boundary = None
    while True:
        events = f"{layout.runs_root}/{(day + dt.timedelta(days=1)).isoformat()}/events"
        record = storage.read_json(spark, f"{events}/export.json")
        if not record or not record.get("complete") or not storage.exists(spark, f"{record['path']}/_SUCCESS"):
            break
        boundary = day_window_ms(day)[1]
        day += dt.timedelta(days=1)
    if boundary is None:
        log.warning("events received on %s have no complete export yet; nothing trimmed (run that export)", day)
        return None
    client.xtrim(keys.events_stream, minid=f"{boundary}-0", approximate=False)
    previous = int(_text(client.get(keys.events_trimmed_before)) or 0)
    client.set(keys.events_trimmed_before, max(previous, boundary))
    log.info("trimmed events received before %s", dt.datetime.fromtimestamp(boundary / 1000, dt.UTC).isoformat())
    return boundary


def _write_experiment_reports(spark, client, keys: KeyLayout, cfg: Config, layout: RunLayout) -> list[str]:
    """Each configured experiment's statistics as they stand, into ``experiments/<name>.json``."""
    storage.delete(spark, layout.experiments)
    written = []
    for name in sorted(cfg.experiments):
        report = experiment_report(client, keys, name)
        if report is not None:
            storage.write_text(spark, f"{layout.experiments}/{name}.json", json.dumps(report, indent=2) + "\n")
            written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    """Run the export_events stage for one logical date."""
    return job_main("export_events", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
