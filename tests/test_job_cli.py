"""Commands as users run them: a refusal is one clear line and exit status 2, never a traceback,
and a bad config or date is refused before Spark starts or anything is written."""

import json
import subprocess
import sys

import pytest

from tools.processes import ROOT, project_env


def run_module(module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env=project_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The refusal's only line on stderr (Spark starting would print many more)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def test_prepare_refuses_missing_input_with_exit_2(tmp_path):
    result = run_module(
        "jobs.prepare", "--run-date", "2026-11-29", RECS__ITEMS__PATH="null",
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
    record = json.loads((tmp_path / "runs" / "2026-11-29" / "stages" / "publish.failed.json").read_text())
    assert (record["stage"], record["refused"], record["error"]) == ("publish", True, "JobError")


CONFIG_TYPOS = [
    ("jobs.train", "--run-date", "2026-11-29"),
    ("jobs.pipeline", "--run-date", "2026-11-29"),
    ("jobs.publish", "--run-date", "2026-11-29"),
    ("store.admin", "status"),
    ("tools.run_summary", "--run-date", "2026-11-29"),
]


@pytest.mark.parametrize("command", CONFIG_TYPOS, ids=[command[0] for command in CONFIG_TYPOS])
def test_a_config_typo_is_refused_before_spark_starts(command):
    line = one_line(run_module(*command, RECS__TRAIN__RNAK="4"))
    assert line.endswith(
        "refused: config error: unknown setting 'train.rnak' [from environment variable RECS__TRAIN__RNAK]"
    )


def test_a_bad_duplicate_policy_is_refused_before_the_quarantine_is_written(tmp_path):
    runs = tmp_path / "runs"
    line = one_line(
        run_module(
            "jobs.prepare",
            "--run-date",
            "2026-11-29",
            RECS__PATHS__RUNS_ROOT=str(runs),
            RECS__PREPARE__DUPLICATE_POLICY="avg",
        )  # fmt: skip
    )
    assert "prepare.duplicate_policy: Input should be 'sum' or 'last' (value 'avg')" in line
    assert not runs.exists(), "nothing was written"


def test_a_bad_config_file_from_the_switch_is_refused(tmp_path):
    (tmp_path / "site.yaml").write_text("evaluate:\n  k: 0\n")
    line = one_line(run_module("jobs.evaluate", "--run-date", "2026-11-29", RECS_CONFIG=str(tmp_path / "site.yaml")))
    assert (
        f"evaluate.k: Input should be greater than or equal to 1 (value 0) [from config file {tmp_path / 'site.yaml'}]"
        in line
    )


@pytest.mark.parametrize("module", ["jobs.train", "jobs.pipeline", "tools.run_summary"])
def test_a_bad_run_date_is_one_line(module):
    line = one_line(run_module(module, "--run-date", "29/11/2026"))
    assert line == f"python -m {module}: error: argument --run-date: run date must be YYYY-MM-DD, got '29/11/2026'"


def test_the_api_server_refuses_a_config_typo_before_it_starts(tmp_path):
    command = [sys.executable, "-m", "serving.server"]
    env = project_env(RECS__API__MAX_M="5", RECS__API__BIND="127.0.0.1:1")
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        "recs-api refused: config error: unknown setting 'api.max_m' [from environment variable RECS__API__MAX_M]"
    )


def test_a_bad_experiment_is_refused_before_spark_starts(tmp_path):
    (tmp_path / "ab.yaml").write_text(
        "experiments:\n  ranking:\n    salt: s\n    control: als\n"
        "    variants:\n      als: {share: 0.5}\n      popular: {share: 0.4, model: popularity}\n"
    )
    line = one_line(run_module("jobs.pipeline", "--run-date", "2026-11-29", "--config", str(tmp_path / "ab.yaml")))
    assert line.endswith(
        f"pipeline refused: config error: experiments.ranking.variants: variant shares must sum to 1, they sum to 0.9 "
        f"[from config file {tmp_path / 'ab.yaml'}]"
    )


def test_publish_and_admin_with_redis_unreachable_say_so_in_one_line(tmp_path):
    from tools.processes import free_port

    down = f"redis://127.0.0.1:{free_port()}/0"
    run_dir = tmp_path / "runs" / "2026-11-29"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": "2026-11-29_20261129T020000000Z", "metrics": {}}))
    published = run_module(
        "jobs.publish", "--run-date", "2026-11-29", RECS__PATHS__RUNS_ROOT=str(tmp_path / "runs"),
        RECS__STORE__URL=down, RECS__STORE__WRITER_RETRIES="0",
    )  # fmt: skip
    assert published.returncode == 1, "a store that is down is worth a retry"
    assert "publish failed: Redis could not be reached or refused us (ConnectionError" in published.stderr
    assert "Traceback" not in published.stderr
    status = run_module("store.admin", "status", RECS__STORE__URL=down, RECS__STORE__WRITER_RETRIES="0")
    assert one_line(status) == "status refused: Redis could not be reached or refused the command (ConnectionError)"
