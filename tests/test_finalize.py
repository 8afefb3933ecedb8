"""finalize: run ids, secret redaction, and refusing incomplete runs."""

import datetime as dt

import pytest

from conf.cli import parse_run_date
from jobs import finalize, storage
from jobs.run_layout import RunLayout
from jobs.runner import JobError


def test_run_id_sorts_by_date_then_finish_time():
    early = finalize.make_run_id("2026-11-28", dt.datetime(2026, 11, 30, 1, 0, 0, 5000, tzinfo=dt.UTC))
    late = finalize.make_run_id("2026-11-29", dt.datetime(2026, 11, 29, 2, 0, 0, tzinfo=dt.UTC))
    rerun = finalize.make_run_id("2026-11-29", dt.datetime(2026, 11, 29, 3, 0, 0, tzinfo=dt.UTC))
    assert early == "2026-11-28_20261130T010000005Z"
    assert sorted([rerun, early, late]) == [early, late, rerun]


def test_run_date_must_be_iso():
    assert parse_run_date("2026-02-03") == "2026-02-03"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_run_date("03/02/2026")


def test_finalize_refuses_a_run_with_missing_stages(spark, tmp_path, base_config):
    layout = RunLayout(str(tmp_path), "2026-11-29")
    storage.write_json(spark, layout.stage_report("prepare"), {"stage": "prepare"})
    with pytest.raises(
        JobError,
        match=r"missing stage reports for \['export_events', 'tune', 'train', 'evaluate', 'recommend', 'similar'\]",
    ):
        finalize.run(spark, base_config, layout)
    assert not storage.exists(spark, layout.manifest)


def test_storage_round_trips_text_atomically(spark, tmp_path):
    target = str(tmp_path / "a" / "doc.json")
    storage.write_json(spark, target, {"b": 1})
    storage.write_json(spark, target, {"b": 2})
    assert storage.read_json(spark, target) == {"b": 2}
    assert not (tmp_path / "a" / "doc.json.tmp").exists()
    assert storage.read_json(spark, str(tmp_path / "missing.json")) is None


def test_rerunning_a_stage_invalidates_the_reports_that_read_it(spark, tmp_path, base_config, monkeypatch):
    from jobs import train
    from jobs.runner import run_stage

    layout = RunLayout(str(tmp_path), "2026-11-29")
    built = ("export_events", "prepare", "tune", "train", "evaluate", "recommend", "similar")
    for stage in built:
        storage.write_json(spark, layout.stage_report(stage), {"stage": stage})
    storage.write_json(spark, layout.manifest, {"run_id": "x"})
    monkeypatch.setattr(train, "run", lambda *_: {"params": "stand-in for a real fit"})
    run_stage(spark, base_config, layout, "train")
    present = {stage for stage in built if storage.exists(spark, layout.stage_report(stage))}
    assert present == {"export_events", "prepare", "tune", "train", "evaluate"}
    assert storage.read_json(spark, layout.stage_report("train"))["params"] == "stand-in for a real fit"
    assert not storage.exists(spark, layout.manifest)
    with pytest.raises(JobError, match=r"missing stage reports for \['recommend', 'similar'\]"):
        finalize.run(spark, base_config, layout)


def test_a_failing_stage_leaves_a_record_and_a_success_removes_it(spark, tmp_path, base_config, monkeypatch):
    from jobs import train
    from jobs.runner import run_stage

    layout = RunLayout(str(tmp_path), "2026-11-29")

    def refuse(*_):
        raise JobError("x" * 5000)

    monkeypatch.setattr(train, "run", refuse)
    with pytest.raises(JobError):
        run_stage(spark, base_config, layout, "train")
    record = storage.read_json(spark, layout.stage_failure("train"))
    assert (record["stage"], record["run_date"], record["refused"], record["error"]) == (
        "train", "2026-11-29", True, "JobError"
    )  # fmt: skip
    assert record["message"] == "x" * 2000 and record["seconds"] >= 0 and record["failed_at"]

    def crash(*_):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(train, "run", crash)
    with pytest.raises(ZeroDivisionError):
        run_stage(spark, base_config, layout, "train")
    assert storage.read_json(spark, layout.stage_failure("train"))["refused"] is False
    monkeypatch.setattr(train, "run", lambda *_: {})
    run_stage(spark, base_config, layout, "train")
    assert not storage.exists(spark, layout.stage_failure("train"))
