"""Where each output of a run lives. One folder per logical run date:

    <runs_root>/<YYYY-MM-DD>/
        prepared/interactions   user_idx, item_idx, weight, ts, events   (parquet)
        prepared/users          user_idx, user_id                        (parquet)
        prepared/items          item_idx, item_id                        (parquet)
        prepared/item_meta      item_id, title, categories               (parquet, optional)
        quarantine/interactions every rejected input row + reason        (parquet)
        quarantine/items        rejected metadata rows + reason          (parquet)
        model/                  the fitted ALSModel
        factors/users, factors/items                                     (parquet)
        recommendations/        user_id, rank, item_id, score            (parquet)
        popular/                scope, category, rank, item_id, score    (parquet)
        stages/<stage>.json     each stage's own report
        manifest.json           written last: the run is complete only when it exists

docs/run-folder.md describes the same layout for readers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jobs.storage import absolute_uri

STAGES = ("prepare", "train", "evaluate", "recommend", "finalize", "publish")
# What each build stage reads from other stages. Re-running a stage makes everything that
# read its output stale; finalize reads every report, so it always has to run again.
STAGE_INPUTS = {"train": ("prepare",), "evaluate": ("prepare",), "recommend": ("prepare", "train")}


def stages_depending_on(stage: str) -> list[str]:
    """Every build stage that reads, directly or not, what ``stage`` writes."""
    found: list[str] = []
    for candidate in STAGES:
        inputs = STAGE_INPUTS.get(candidate, ())
        if stage in inputs or any(earlier in inputs for earlier in found):
            found.append(candidate)
    return found


def dated_path(path: str | None, run_date: str) -> str | None:
    """Put the run date into a configured path: ``{run_date}`` stands for YYYY-MM-DD."""
    return None if path is None else str(path).replace("{run_date}", run_date)


def parse_run_date(text: str) -> str:
    """Validate a YYYY-MM-DD logical run date and return it unchanged."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise ValueError(f"run date must be YYYY-MM-DD, got {text!r}") from exc


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run's outputs, derived from the runs root and the logical run date."""

    runs_root: str
    run_date: str

    @classmethod
    def from_config(cls, cfg: dict, run_date: str) -> RunLayout:
        """Build the layout from the pipeline config's ``paths.runs_root``."""
        return cls(absolute_uri(cfg["paths"]["runs_root"]).rstrip("/"), parse_run_date(run_date))

    @property
    def run_dir(self) -> str:
        return f"{self.runs_root}/{self.run_date}"

    def _sub(self, *parts: str) -> str:
        return "/".join((self.run_dir, *parts))

    @property
    def interactions(self) -> str:
        return self._sub("prepared", "interactions")

    @property
    def users(self) -> str:
        return self._sub("prepared", "users")

    @property
    def items(self) -> str:
        return self._sub("prepared", "items")

    @property
    def item_meta(self) -> str:
        return self._sub("prepared", "item_meta")

    @property
    def quarantine(self) -> str:
        return self._sub("quarantine", "interactions")

    @property
    def quarantine_items(self) -> str:
        return self._sub("quarantine", "items")

    @property
    def model(self) -> str:
        return self._sub("model")

    @property
    def user_factors(self) -> str:
        return self._sub("factors", "users")

    @property
    def item_factors(self) -> str:
        return self._sub("factors", "items")

    @property
    def recommendations(self) -> str:
        return self._sub("recommendations")

    @property
    def popular(self) -> str:
        return self._sub("popular")

    @property
    def manifest(self) -> str:
        return self._sub("manifest.json")

    def stage_report(self, stage: str) -> str:
        """Path of the JSON report a stage writes when it finishes."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        return self._sub("stages", f"{stage}.json")
