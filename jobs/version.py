"""What code produced a run: RECS_CODE_VERSION, else the BUILD_VERSION file the bundle carries,
else ``git describe`` of the checkout, else the package version alone."""

from __future__ import annotations

import os
import pkgutil
import subprocess
from pathlib import Path

PACKAGE_VERSION = "0.1.0"


def code_version() -> str:
    """A string naming the code version, best effort, never raising."""
    if os.environ.get("RECS_CODE_VERSION"):
        return os.environ["RECS_CODE_VERSION"]
    try:
        bundled = pkgutil.get_data("jobs", "BUILD_VERSION")
    except OSError:
        bundled = None
    if bundled:
        return bundled.decode("utf-8").strip()
    return git_version(Path(__file__).resolve().parents[1]) or PACKAGE_VERSION


def git_version(checkout: Path) -> str | None:
    """``<package version>+g<sha>[.dirty]`` for a git checkout, or None outside one."""
    if not (checkout / ".git").exists():
        return None
    try:
        sha = _git(checkout, "rev-parse", "--short=12", "HEAD")
        dirty = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{PACKAGE_VERSION}+g{sha}{'.dirty' if dirty else ''}"


def _git(checkout: Path, *args: str) -> str:
    command = ["git", "-C", str(checkout), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
