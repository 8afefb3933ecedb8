"""Package the project's Python code into one zip for ``spark-submit --py-files``.

    python -m tools.bundle dist/recs_jobs.zip

The zip holds what the jobs run: the ``jobs``, ``store`` and ``conf`` packages (not the API,
the DAG or these tools) and a BUILD_VERSION file, so the code version is known on a cluster
where there is no git checkout. Executors need the third-party packages too (pyarrow, pandas,
numpy, redis, pydantic, pyyaml): ship a packed virtualenv with ``--archives`` as the README's
cluster section shows.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from jobs.version import code_version

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jobs", "store", "conf")
SUFFIXES = (".py", ".yaml", ".json")


def bundle(target: Path) -> Path:
    """Write the zip to ``target`` (replacing it) and return its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            for path in sorted((ROOT / package).rglob("*")):
                if path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(ROOT).as_posix())
        archive.writestr("jobs/BUILD_VERSION", code_version() + "\n")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Build the bundle at the path given (default dist/recs_jobs.zip)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else ROOT / "dist" / "recs_jobs.zip"
    print(bundle(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
