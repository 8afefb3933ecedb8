"""The soak tool's bookkeeping, on a half-minute soak: it exits 0 on PASS, and its JSON holds
every window, the publish of run B and the prune of run A, and the verdict with its figures.

    .venv/bin/pytest -m faults tests/test_soak.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.processes import ROOT, project_env
from tools.soak import RUN_A, RUN_B

pytestmark = pytest.mark.faults

CHECKS = {"no_errors", "stable_p99", "worker_memory", "flat_redis_connections"}


def test_a_half_minute_soak_passes_and_records_its_windows(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.soak", "--minutes", "0.5", "--out-dir", str(tmp_path)],
        cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}"
    assert "stable p99" in result.stdout and result.stdout.rstrip().splitlines()[-2] == "PASS"
    [report_file] = tmp_path.glob("soak-*.json")
    report = json.loads(report_file.read_text())

    windows = report["windows"]
    assert [window["index"] for window in windows] == [1, 2, 3, 4]
    assert all(window["requests"] > 0 and window["errors"] == 0 for window in windows)
    assert all(window["p50_ms"] <= window["p99_ms"] and window["worker_rss_mb"] > 0 for window in windows)
    assert all(len(window["worker_pids"]) >= 2 and window["redis_clients"] >= 2 for window in windows)
    actions = {window["event"]: window["store_action"] for window in windows if window["event"]}
    assert actions["publish B"]["action"] == f"publish {RUN_B}" and actions["publish B"]["status"] == "published"
    assert actions["prune A"]["removed_runs"] == [RUN_A]

    verdict = report["verdict"]
    assert verdict["pass"] is True and set(verdict["checks"]) == CHECKS
    assert all(check["pass"] for check in verdict["checks"].values())
    assert verdict["checks"]["no_errors"]["errors"] == 0
