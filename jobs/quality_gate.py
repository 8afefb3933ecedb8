"""quality_gate: publish a run only when its lists are good enough.

    python -m jobs.quality_gate --run-date 2026-11-29     # exit 0: publish; exit 2: held

finalize judges the run (``judge``) and writes the decision into the manifest as ``gate``:
``passed``, ``reason`` and each check with its figures. The run is held when the reference
ALS variant's NDCG@k is below popularity's by more than ``gate.max_below_popularity`` (a
fraction of popularity's), or fell by more than ``gate.max_drop`` (a fraction) from the
current published run's. The DAG branches on the decision (``branch``): to publish, or to a
task that fails with the reason. The publish job refuses a held run unless it is given
``--override-gate``, which it logs and records in the run's meta.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING

from jobs.runner import JobError, job_main

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from conf.schema import Config, GateSection
    from jobs.run_layout import RunLayout

log = logging.getLogger("recs.quality_gate")


def judge(metrics: dict, current: dict | None, settings: GateSection) -> dict:
    """The gate's decision for a run's ``metrics`` (the manifest's), given the current published
    run (``{"run_id", "metrics"}``, or ``{"error"}`` when it could not be read, or None)."""
    if not settings.enabled:
        return {"passed": True, "reason": "the quality gate is off", "checks": []}
    ndcg = (metrics.get("als") or {}).get("ndcg_at_k")
    if ndcg is None:
        return {
            "passed": True,
            "reason": "no ALS evaluation to judge (evaluation off, or no ALS variant)",
            "checks": [],
        }
    checks = [_against_popularity(ndcg, metrics, settings.max_below_popularity)]
    checks.append(_against_current(ndcg, metrics, current, settings.max_drop))
    failed = [check["reason"] for check in checks if check["passed"] is False]
    reason = "; ".join(failed) if failed else "; ".join(check["reason"] for check in checks)
    return {"passed": not failed, "reason": reason, "checks": checks}


def _against_popularity(ndcg: float, metrics: dict, margin: float) -> dict:
    popular = (metrics.get("popularity") or {}).get("ndcg_at_k")
    if popular is None:
        return {"check": "popularity", "passed": None, "reason": "no popularity figure to compare with"}
    floor = popular * (1 - margin)
    passed = ndcg >= floor
    relation = "at least" if passed else "below"
    return {
        "check": "popularity", "passed": passed, "ndcg_at_k": ndcg, "popularity_ndcg_at_k": popular, "floor": floor,
        "reason": f"NDCG@k {ndcg:.4f} is {relation} popularity's {popular:.4f} less {margin:.0%} ({floor:.4f})",
    }  # fmt: skip


def _against_current(ndcg: float, metrics: dict, current: dict | None, max_drop: float) -> dict:
    if current is None:
        return {"check": "current_run", "passed": None, "reason": "no run is published yet"}
    if "error" in current:
        return {"check": "current_run", "passed": None, "reason": f"current run not compared: {current['error']}"}
    k, their_metrics = metrics.get("k"), current.get("metrics") or {}
    theirs = their_metrics.get("als") or {}
    if theirs.get("ndcg_at_k") is None or their_metrics.get("k") != k:
        return {"check": "current_run", "passed": None, "run_id": current["run_id"],
                "reason": f"current run {current['run_id']} has no NDCG@{k} to compare with"}  # fmt: skip
    ours_sample = (metrics.get("split") or {}).get("user_sample")
    if their_metrics.get("user_sample") != ours_sample:
        return {"check": "current_run", "passed": None, "run_id": current["run_id"],
                "reason": f"current run {current['run_id']} was scored on other users "
                          f"(user sample {their_metrics.get('user_sample')}, this run's {ours_sample})"}  # fmt: skip
    floor = theirs["ndcg_at_k"] * (1 - max_drop)
    passed = ndcg >= floor
    relation = "at least" if passed else "below"
    return {
        "check": "current_run", "passed": passed, "run_id": current["run_id"], "current_ndcg_at_k": theirs["ndcg_at_k"],
        "floor": floor,
        "reason": f"NDCG@k {ndcg:.4f} is {relation} current run {current['run_id']}'s {theirs['ndcg_at_k']:.4f} "
                  f"less {max_drop:.0%} ({floor:.4f})",
    }  # fmt: skip


def current_published(cfg: Config) -> dict | None:
    """The current published run's id and metrics from the store, None when nothing is published,
    or ``{"error": ...}`` when the store cannot say."""
    from store.connection import connect, writer_settings
    from store.contract import KeyLayout

    try:
        client = connect(writer_settings(cfg.store, client_name="recs-gate"))
        try:
            return published_metrics(client, KeyLayout(cfg.store.key_prefix))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - an unreachable store leaves this check undecided
        return {"error": f"the store could not be read ({type(exc).__name__})"}


def published_metrics(client, keys) -> dict | None:
    """The current run's id and metrics as the store's run meta holds them; None when none is current."""
    from store.registry import current_run, read_run_meta

    run_id = current_run(client, keys)
    if run_id is None:
        return None
    meta = read_run_meta(client, keys, run_id)
    return {"run_id": run_id, "metrics": (meta or {}).get("metrics") or {}}


def held_message(run_date: str, gate: dict) -> str:
    """What a held run's refusal says: why, and how to publish it anyway."""
    return (f"run {run_date} is held by the quality gate: {gate['reason']}. To publish it anyway: "
            f"python -m jobs.publish --run-date {run_date} --override-gate")  # fmt: skip


def run(spark: SparkSession, cfg: Config, layout: RunLayout) -> dict:
    """Read the manifest's decision; refuse (exit 2) when the run is held."""
    from jobs import storage

    manifest = storage.read_json(spark, layout.manifest)
    if manifest is None:
        raise JobError(f"run {layout.run_date} has no manifest.json: it did not complete")
    gate = manifest.get("gate") or {"passed": True, "reason": "the run was finalized without a gate"}
    if not gate["passed"]:
        raise JobError(held_message(layout.run_date, gate))
    log.info("run %s passes the quality gate: %s", layout.run_date, gate["reason"])
    return gate


def read_manifest_directly(run_dir: str) -> dict:
    """The manifest of a run folder, read without Spark (pyarrow's file systems: local, HDFS,
    S3, GCS), for the DAG's branch task."""
    from pyarrow import fs

    uri = run_dir.replace("s3a://", "s3://", 1).replace("s3n://", "s3://", 1)
    filesystem, path = fs.FileSystem.from_uri(uri if "://" in uri else f"file://{uri}")
    with filesystem.open_input_stream(f"{path}/manifest.json") as stream:
        return json.loads(stream.read().decode("utf-8"))


def branch(run_dir: str, publish_task: str, held_task: str) -> str:
    """The DAG's branch: the task to follow for the run in ``run_dir``."""
    gate = read_manifest_directly(run_dir).get("gate") or {"passed": True}
    log.info("quality gate: %s - %s", "publish" if gate["passed"] else "held", gate.get("reason"))
    return publish_task if gate["passed"] else held_task


def main(argv: list[str] | None = None) -> int:
    """Check one logical date's gate decision: exit 0 to publish, 2 when held."""
    return job_main("quality_gate", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
