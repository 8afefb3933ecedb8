"""Jobs as commands: a refusal is one clear log line and exit status 2, not a traceback."""

import subprocess
import sys

from processes import ROOT, project_env


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env=project_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_prepare_refuses_missing_input_with_exit_2(tmp_path):
    result = run_module(
        "jobs.prepare", "--run-date", "2026-11-29",
        RECS__INPUT__PATH=str(tmp_path / "absent"), RECS__PATHS__RUNS_ROOT=str(tmp_path / "runs"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"prepare refused: input not found: {tmp_path / 'absent'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_refuses_an_incomplete_run_with_exit_2(tmp_path):
    (tmp_path / "runs" / "2026-11-29").mkdir(parents=True)
    result = run_module("jobs.publish", "--run-date", "2026-11-29", RECS__PATHS__RUNS_ROOT=str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "publish refused: run 2026-11-29 has no manifest.json" in result.stderr


def test_bad_override_and_bad_date_are_refused_before_spark_starts():
    typo = run_module("jobs.train", "--run-date", "2026-11-29", RECS__TRAIN__RNAK="4")
    assert typo.returncode == 2 and "unknown setting 'train.rnak'" in typo.stderr
    bad_date = run_module("jobs.train", "--run-date", "29/11/2026")
    assert bad_date.returncode == 2 and "run date must be YYYY-MM-DD" in bad_date.stderr
