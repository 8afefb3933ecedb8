"""The quality gate: its decision, the publish job's refusal and deliberate override, and the
DAG's branch to publish or to holding the run."""

from __future__ import annotations

import json

import pytest
from store_seeding import write_run_folder

from conf import with_overrides
from conf.schema import GateSection
from jobs import publish, quality_gate, storage
from jobs.quality_gate import judge
from jobs.runner import JobError
from store.contract import KeyLayout, decode_meta

GATE = GateSection(enabled=True, max_below_popularity=0.1, max_drop=0.2)
RUN_ID = "2026-11-29_20261129T020000000Z"


def metrics(als: float, popularity: float = 0.1, k: int = 10) -> dict:
    return {"k": k, "als": {"ndcg_at_k": als}, "popularity": {"ndcg_at_k": popularity}}


def current(als: float, k: int = 10) -> dict:
    return {"run_id": "2026-11-28_x", "metrics": metrics(als, k=k)}


def test_a_run_near_popularity_and_the_current_run_passes():
    decision = judge(metrics(0.095), current(0.11), GATE)  # floors: 0.09 and 0.088
    assert decision["passed"] is True
    assert [check["passed"] for check in decision["checks"]] == [True, True]


def test_a_run_below_popularity_by_more_than_the_margin_is_held():
    decision = judge(metrics(0.089), None, GATE)
    assert decision["passed"] is False
    assert decision["reason"] == "NDCG@k 0.0890 is below popularity's 0.1000 less 10% (0.0900)"
    assert decision["checks"][1] == {"check": "current_run", "passed": None, "reason": "no run is published yet"}


def test_a_run_that_dropped_against_the_current_run_is_held():
    decision = judge(metrics(0.2), current(0.3), GATE)
    assert decision["passed"] is False
    assert decision["reason"] == "NDCG@k 0.2000 is below current run 2026-11-28_x's 0.3000 less 20% (0.2400)"


def test_what_cannot_be_compared_does_not_hold_the_run():
    assert judge(metrics(0.2), {"error": "the store could not be read (ConnectionError)"}, GATE)["passed"] is True
    assert judge(metrics(0.2), current(0.9, k=20), GATE)["passed"] is True, "another k is not comparable"
    assert judge({"k": 10}, None, GATE)["reason"].startswith("no ALS evaluation")
    off = GATE.model_copy(update={"enabled": False})
    assert judge(metrics(0.0), current(0.9), off) == {"passed": True, "reason": "the quality gate is off", "checks": []}


def test_runs_scored_on_other_users_are_not_compared_and_runs_on_the_same_sample_are():
    sampled = {"run_id": "2026-11-28_x", "metrics": {**metrics(0.9), "user_sample": 20000}}
    decision = judge(metrics(0.2), sampled, GATE)
    assert decision["passed"] is True
    assert decision["checks"][1]["reason"] == (
        "current run 2026-11-28_x was scored on other users (user sample 20000, this run's None)"
    )
    assert judge({**metrics(0.2), "split": {"user_sample": 20000}}, sampled, GATE)["passed"] is False


@pytest.fixture
def cfg(base_config, redis_server, tmp_path):
    return with_overrides(
        base_config, {"paths": {"runs_root": str(tmp_path / "runs")}, "store": {"url": redis_server.url}}
    )


def held_run(spark, cfg):
    layout = write_run_folder(spark, cfg.paths.runs_root, "2026-11-29", RUN_ID, "a")
    manifest = storage.read_json(spark, layout.manifest)
    manifest["metrics"] = metrics(0.05)
    manifest["gate"] = judge(manifest["metrics"], None, GATE)
    storage.write_json(spark, layout.manifest, manifest)
    return layout


def test_publish_refuses_a_held_run_unless_overridden_and_records_the_override(spark, cfg, redis_client, caplog):
    layout = held_run(spark, cfg)
    with pytest.raises(JobError, match="held by the quality gate: NDCG@k 0.0500 is below popularity's"):
        publish.run(spark, cfg, layout)
    with pytest.raises(JobError, match="held by the quality gate"):
        quality_gate.run(spark, cfg, layout)
    assert redis_client.dbsize() == 0
    with caplog.at_level("WARNING", logger="recs.publish"):
        assert publish.run(spark, cfg, layout, override_gate=True)["status"] == "published"
    assert "although the quality gate held it (--override-gate)" in caplog.text
    meta = decode_meta(redis_client.get(KeyLayout("recs").meta(RUN_ID)))
    assert meta["gate"]["passed"] is False and meta["gate"]["overridden"] is True


def test_finalize_compares_with_the_run_the_store_serves(spark, cfg, redis_client):
    from store_seeding import seed_run

    seed_run(redis_client, "2026-11-28_20261128T020000000Z", {"u": [("i", 1.0)]}, [("p", 1.0)])
    meta_key = KeyLayout("recs").meta("2026-11-28_20261128T020000000Z")
    meta = decode_meta(redis_client.get(meta_key))
    redis_client.set(meta_key, json.dumps({**meta, "metrics": metrics(0.5)}))
    current_run = quality_gate.current_published(cfg)
    assert current_run == {"run_id": "2026-11-28_20261128T020000000Z", "metrics": metrics(0.5)}
    decision = judge(metrics(0.3), current_run, GATE)
    assert decision["passed"] is False and "current run 2026-11-28_20261128T020000000Z's 0.5000" in decision["reason"]
    unreachable = with_overrides(cfg, {"store": {"url": "redis://127.0.0.1:1/0", "writer_retries": 0}})
    assert quality_gate.current_published(unreachable) == {"error": "the store could not be read (ConnectionError)"}


def test_publish_judges_again_against_the_run_it_would_replace(spark, cfg, redis_client):
    from store_seeding import seed_run

    seed_run(redis_client, "2026-11-28_20261128T020000000Z", {"u": [("i", 1.0)]}, [("p", 1.0)])
    meta_key = KeyLayout("recs").meta("2026-11-28_20261128T020000000Z")
    redis_client.set(meta_key, json.dumps({**decode_meta(redis_client.get(meta_key)), "metrics": metrics(0.5)}))
    layout = write_run_folder(spark, cfg.paths.runs_root, "2026-11-29", RUN_ID, "a")
    manifest = storage.read_json(spark, layout.manifest)
    manifest["metrics"] = metrics(0.3)
    # finalize could not reach the store, so its check against the current run was undecided
    manifest["gate"] = judge(manifest["metrics"], {"error": "the store could not be read (ConnectionError)"}, GATE)
    storage.write_json(spark, layout.manifest, manifest)
    assert manifest["gate"]["passed"] is True
    with pytest.raises(JobError, match="held by the quality gate: NDCG@k 0.3000 is below current run 2026-11-28_"):
        publish.run(spark, cfg, layout)
    assert redis_client.get(KeyLayout("recs").current) == b"2026-11-28_20261128T020000000Z"
    assert publish.run(spark, cfg, layout, override_gate=True)["status"] == "published"


def test_the_dag_branches_a_held_run_away_from_publish(spark, cfg, tmp_path):
    layout = held_run(spark, cfg)
    assert quality_gate.branch(layout.run_dir, "publish", "held") == "held"
    manifest = storage.read_json(spark, layout.manifest)
    manifest["gate"] = judge(metrics(0.5), None, GATE)
    storage.write_json(spark, layout.manifest, manifest)
    assert quality_gate.branch(f"file://{layout.run_dir}", "publish", "held") == "publish"
