"""finalize: check every stage finished, then write the run's manifest.json, last.

    spark-submit --py-files dist/recs_jobs.zip jobs/finalize.py --run-date 2026-11-29

The manifest is the run's completion marker: readers (the publish job included) trust a run
folder only when it exists. It holds the config used, input, quarantine and output counts,
evaluation metrics, the tuning trials and the chosen setting, the quality gate's decision
(jobs/quality_gate.py: against popularity and the current published run, read from the store),
stage timings, every build stage's report, the code version and the run id. Which reports it
requires comes from the stage table (jobs/stages.py): every build stage's.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import TYPE_CHECKING

from conf.redaction import redact_config, redact_values
from jobs import storage
from jobs.quality_gate import current_published, judge
from jobs.run_layout import RunLayout
from jobs.runner import JobError, job_main
from jobs.stages import PIPELINE
from jobs.version import code_version

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from conf.schema import Config

MANIFEST_VERSION = 1

log = logging.getLogger("recs.finalize")


def make_run_id(run_date: str, finalized_at: dt.datetime) -> str:
    """Run id: the logical date, then the UTC finish time to the millisecond; ids sort by age."""
    stamp = finalized_at.astimezone(dt.UTC)
    return f"{run_date}_{stamp:%Y%m%dT%H%M%S}{stamp.microsecond // 1000:03d}Z"


def build_manifest(
    config: dict, reports: dict, run_date: str, finalized_at: dt.datetime, version: str, layout: RunLayout
) -> dict:
    """Assemble the manifest document from the build stages' reports."""
    prepare, recommend, evaluate = reports["prepare"], reports["recommend"], reports["evaluate"]
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": make_run_id(run_date, finalized_at),
        "run_date": run_date,
        "finalized_at": finalized_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "code_version": version,
        "config": redact_config(config),
        "counts": {
            "input": prepare["input"],
            "quarantine": prepare["quarantine"],
            "prepared": prepare["output"],
            "item_meta": prepare.get("item_meta", {}),
            "output": recommend["output"],
        },
        "metrics": {
            **{key: evaluate[key] for key in ("k", "split", "als", "popularity", "variants") if key in evaluate},
            "cold_start": reports.get("similar", {}).get("evaluation"),
        },
        "tuning": {key: value for key, value in reports["tune"].items() if key not in ("stage", "seconds")},
        "variants": recommend["variants"],
        "experiment": recommend["experiment"],
        "timings_seconds": {stage: reports[stage]["seconds"] for stage in PIPELINE.build_stages},
        "stages": redact_values(reports),
        "outputs": {
            "recommendations": layout.recommendations,
            "popular": layout.popular,
            "models": layout.models,
            "quarantine": layout.quarantine,
        },
    }


def read_stage_reports(spark: SparkSession, layout: RunLayout) -> dict:
    """Every build stage's report; refuses when one is missing."""
    reports = {stage: storage.read_json(spark, layout.stage_report(stage)) for stage in PIPELINE.build_stages}
    missing = [stage for stage, report in reports.items() if report is None]
    if missing:
        raise JobError(f"run {layout.run_date} is missing stage reports for {missing}: run those stages first")
    for name, path in (("recommendations", layout.recommendations), ("popular", layout.popular)):
        if not storage.exists(spark, f"{path}/_SUCCESS"):
            raise JobError(f"run {layout.run_date} has no complete {name} output at {path}")
    return reports


def run(spark: SparkSession, cfg: Config, layout: RunLayout, finalized_at: dt.datetime | None = None) -> dict:
    """Write the manifest for a run whose stages have all finished; return it.

    The manifest is this stage's only output, so it writes no separate stage report."""
    reports = read_stage_reports(spark, layout)
    finalized_at = finalized_at or dt.datetime.now(dt.UTC)
    config = cfg.model_dump(mode="json")
    manifest = build_manifest(config, reports, layout.run_date, finalized_at, code_version(), layout)
    current = current_published(cfg) if cfg.gate.enabled else None
    manifest["gate"] = judge(manifest["metrics"], current, cfg.gate)
    storage.write_json(spark, layout.manifest, manifest)
    log.info("quality gate: %s - %s", "passed" if manifest["gate"]["passed"] else "HELD", manifest["gate"]["reason"])
    return {"run_id": manifest["run_id"], "manifest": layout.manifest, "gate_passed": manifest["gate"]["passed"]}


def main(argv: list[str] | None = None) -> int:
    """Finalize one logical date's run."""
    return job_main("finalize", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
