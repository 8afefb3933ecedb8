"""The regression bench that make test runs: it records the API's figures next to their
references (bench/__main__.py --quick) and keeps them under var/bench for later comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.processes import project_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_bench_records_every_row_with_no_errors():
    before = set((ROOT / "var" / "bench").glob("quick-*.json"))
    result = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT, env=project_env(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    written = set((ROOT / "var" / "bench").glob("quick-*.json")) - before
    assert len(written) == 1
    api = json.loads(written.pop().read_text())["api"]
    assert len(api["rows"]) == 12
    assert set(api["targets"]) == {"x_textbook", "share_of_fastest_floor", "p99_over_floor_ms"}
    assert all(row["rps"] > 0 and row["errors"] == 0 for row in api["rows"].values()), api["rows"]
