"""Which package may import which: jobs/ and serving/ both build on store/ and never on each
other, and the bundle shipped to Spark executors (jobs, store, conf) needs nothing else."""

import ast
from pathlib import Path

import pytest

from tools.processes import ROOT

# Package -> the project packages it must never import.
FORBIDDEN = {
    "jobs": {"serving", "tools", "orchestration", "dags", "bench"},
    "serving": {"jobs", "tools", "orchestration", "dags", "bench"},
    "store": {"jobs", "serving", "tools", "orchestration", "dags", "bench"},
    "conf": {"jobs", "serving", "tools", "orchestration", "dags", "bench"},
    "orchestration": {"serving", "tools", "bench"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every import in a file, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_within_bounds(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    crossings = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package]) for path in files}
    assert {path: names for path, names in crossings.items() if names} == {}


def test_the_bundle_holds_only_what_executors_run(tmp_path):
    import zipfile

    from tools.bundle import bundle

    with zipfile.ZipFile(bundle(tmp_path / "recs_jobs.zip")) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
        assert "conf/recs.yaml" in archive.namelist()
    assert top_level == {"jobs", "store", "conf"}
