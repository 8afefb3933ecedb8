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


def test_switching_events_off_leaves_an_export_alone(spark, cfg, redis_client):
    add(redis_client, "2026-11-28", 5, "u1", "i1", "click")
    layout = RunLayout.from_config(cfg, "2026-11-29")
    export_events.run(spark, cfg, layout)
    off = with_overrides(cfg, {"events": {"enabled": False}})
    assert export_events.run(spark, off, layout) == {"enabled": False}
    assert exported(spark, layout, "2026-11-28").count() == 1, "the only copy of a trimmed day must survive"


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_prepare_takes_events_of_known_items_and_quarantines_the_rest(spark, cfg, redis_client, tmp_path):
    write_lines(tmp_path / "data" / "interactions" / "part-0.csv",
                ["user_id,item_id,rating,timestamp", "u1,i1,3,1764200000", "u2,i2,1,1764200000"])  # fmt: skip
    write_lines(tmp_path / "data" / "items" / "items.csv", ["item_id,title,categories", "i3,Catalogue only,A"])
    add(redis_client, "2026-11-28", 5, "u1", "i2", "click")  # known from the log
    add(redis_client, "2026-11-28", 6, "u9", "i3", "conversion")  # known from the item metadata: a new user
    add(redis_client, "2026-11-28", 7, "u1", "made-up", "conversion")  # not in the catalogue
    add(redis_client, "2026-11-28", 8, "u1", "i1", "impression")  # weight 0: left out
    layout = RunLayout.from_config(cfg, "2026-11-29")
    export_events.run(spark, cfg, layout)
    report = prepare.run(spark, cfg, layout)
    assert report["events"]["rows_read"] == 3 and report["events"]["rows_valid"] == 2
    assert report["events"]["quarantine_by_reason"] == {"unknown_event_item": 1}
    assert report["input"] == {"path": cfg.input.path, "rows_read": 2, "rows_valid": 2}
    quarantined = spark.read.parquet(layout.quarantine).collect()
    assert [(row["item_raw"], row["reason"], row["origin"]) for row in quarantined] == [
        ("made-up", "unknown_event_item", "events")
    ]
    users = {row["user_id"]: row["user_idx"] for row in spark.read.parquet(layout.users).collect()}
    items = {row["item_id"]: row["item_idx"] for row in spark.read.parquet(layout.items).collect()}
    weights = {(r["user_idx"], r["item_idx"]): r["weight"] for r in spark.read.parquet(layout.interactions).collect()}
    assert weights[(users["u1"], items["i2"])] == 1.0 and weights[(users["u9"], items["i3"])] == 5.0
    assert "made-up" not in items
