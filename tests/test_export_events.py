"""export_events with a real SparkSession and redis-server: a day of the stream to Parquet,
the same rows on a re-run, trimming only what complete exports hold, and events as the next
run's interactions."""

from __future__ import annotations

import datetime as dt

import pytest
from store_seeding import seed_run

from conf import with_overrides
from jobs import export_events, prepare, storage
from jobs.run_layout import RunLayout
from jobs.runner import JobError
from store.contract import KeyLayout

KEYS = KeyLayout("recs")


@pytest.fixture
def cfg(pipeline_config, redis_server):
    return with_overrides(pipeline_config, {"store": {"url": redis_server.url}, "events": {"export_slices": 3}})


def ms(day: str, hour: int = 0, minute: int = 0) -> int:
    moment = dt.datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def add(client, day: str, hour: int, user: str, item: str, kind: str, **extra) -> None:
    """An event received at a chosen time: the stream id carries the receive time."""
    fields = {"user_id": user, "item_id": item, "type": kind, "ts": "", "rec_id": "", "experiment": "",
              "variant": "", "counted": "0", **extra}  # fmt: skip
    client.xadd(KEYS.events_stream, fields, id=f"{ms(day, hour)}-*")


def exported(spark, layout: RunLayout, day: str):
    return spark.read.parquet(f"{layout.events}/date={day}").orderBy("event_id")


def test_a_day_is_exported_the_same_on_a_rerun_and_trimmed_after(spark, cfg, redis_client):
    add(redis_client, "2026-11-27", 23, "u0", "i0", "click")  # the day before: not this run's
    for hour in range(0, 24, 3):
        add(redis_client, "2026-11-28", hour, f"u{hour}", f"i{hour % 5}", "impression")
        add(redis_client, "2026-11-28", hour, f"u{hour}", f"i{hour % 5}", "click", ts="1764300000.5")
    add(redis_client, "2026-11-29", 0, "u9", "i9", "click")  # the run date itself: the next run's
    layout = RunLayout.from_config(cfg, "2026-11-29")
    first = export_events.run(spark, cfg, layout)
    assert (first["day"], first["rows"], first["complete"]) == ("2026-11-28", 16, True)
    assert first["by_type"] == {"click": 8, "impression": 8}
    rows = exported(spark, layout, "2026-11-28").collect()
    assert [row["ts"] for row in rows if row["type"] == "click"] == [1764300000.5] * 8
    assert rows[0]["received_at"] == dt.datetime(2026, 11, 28, 0, 0)
    # The 27th has no export, so nothing may be trimmed yet.
    assert first["trimmed_before"] is None and redis_client.xlen(KEYS.events_stream) == 18

    again = export_events.run(spark, cfg, layout)
    assert again["rows"] == 16
    assert exported(spark, layout, "2026-11-28").collect() == rows, "a re-run gives the same rows"

    # The missing export of the 27th closes the gap: the 27th and 28th are trimmed, the 29th stays.
    late = export_events.run(spark, cfg, RunLayout.from_config(cfg, "2026-11-28"))
    assert late["trimmed_before"] == ms("2026-11-29")
    assert [entry[1][b"user_id"] for entry in redis_client.xrange(KEYS.events_stream)] == [b"u9"]

    kept = export_events.run(spark, cfg, layout)
    assert kept["status"] == "kept" and kept["rows"] == 16, "a trimmed, complete day keeps its export"
    assert exported(spark, layout, "2026-11-28").count() == 16


def test_a_trimmed_day_without_its_export_is_refused(spark, cfg, redis_client):
    redis_client.set(KEYS.events_trimmed_before, ms("2026-11-29"))
    with pytest.raises(JobError, match="events of 2026-11-28 were trimmed from Redis"):
        export_events.run(spark, cfg, RunLayout.from_config(cfg, "2026-11-29"))


def test_a_day_still_under_way_is_exported_but_never_trimmed(spark, cfg, redis_client):
    now_ms = int(redis_client.time()[0]) * 1000
    today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
    redis_client.xadd(KEYS.events_stream, {"user_id": "u", "item_id": "i", "type": "click"})
    layout = RunLayout.from_config(cfg, (today + dt.timedelta(days=1)).isoformat())
    report = export_events.run(spark, cfg, layout)
    assert (report["rows"], report["complete"], report["trimmed_before"]) == (1, False, None)
    assert redis_client.xlen(KEYS.events_stream) == 1


def test_experiment_reports_are_written_into_the_run_folder(spark, cfg, redis_client):
    shares = {"als": 0.5, "popular": 0.5}
    lists = {variant: {"u1": [("x", 1.0)]} for variant in shares}
    seed_run(redis_client, "2026-11-28_20261128T020000000Z", {}, [("p", 1.0)], variant_lists=lists,
             experiment={"name": "ranking", "salt": "s", "control": "als", "shares": shares})  # fmt: skip
    experiment = {"salt": "s", "control": "als", "variants": {"als": {"share": 0.5}, "popular": {"share": 0.5}}}
    with_experiment = with_overrides(cfg, {"experiments": {"ranking": experiment}})
    layout = RunLayout.from_config(with_experiment, "2026-11-29")
    report = export_events.run(spark, with_experiment, layout)
    assert report["experiments"] == ["ranking"]
    written = storage.read_json(spark, f"{layout.experiments}/ranking.json")
    assert written["experiment"] == "ranking" and [row["variant"] for row in written["variants"]] == ["als", "popular"]


def test_events_become_weighted_interactions(spark):
    events = spark.createDataFrame(
        [("u1", "i1", "impression", None, dt.datetime(2026, 11, 28, 10, tzinfo=dt.UTC), "f"),
         ("u1", "i1", "click", 1764300000.25, dt.datetime(2026, 11, 28, 10, tzinfo=dt.UTC), "f"),
         ("u2", "i2", "conversion", None, dt.datetime(2026, 11, 28, 11, tzinfo=dt.UTC), "f")],
        "user_id string, item_id string, type string, ts double, received_at timestamp, source_file string",
    )  # fmt: skip
    rows = prepare.event_interactions(events, {"impression": 0.0, "click": 1.0, "conversion": 5.0})
    got = sorted((r["user_raw"], r["item_raw"], float(r["weight_raw"]), r["ts_raw"]) for r in rows.collect())
    assert got == [("u1", "i1", 1.0, "1764300000.250"), ("u2", "i2", 5.0, "1795863600.000")]
    validated = prepare.validate_interactions(rows, "epoch")
    assert {r["reason"] for r in validated.collect()} == {None}
