"""Where each output of a run lives: one folder per logical run date, with the paths named in
the stage table (jobs/stages.py).

    <runs_root>/<YYYY-MM-DD>/
        prepared/interactions   user_idx, item_idx, weight, ts, events   (parquet)
        prepared/users          user_idx, user_id                        (parquet)
        prepared/items          item_idx, item_id                        (parquet)
        prepared/item_meta      item_id, title, categories               (parquet, optional)
        quarantine/interactions every rejected input row + reason        (parquet)
        quarantine/items        rejected metadata rows + reason          (parquet)
        evaluation/split        the interactions plus holdout (bool)     (parquet)
        evaluation/split.json   the evaluate settings the split was made with
        evaluation/models/<key> models trained on the split, by setting
        tuning/chosen.json      the ALS setting tune chose, and why
        models/<variant>/       the fitted ALSModel of each ALS variant
        factors/<variant>/users, factors/<variant>/items                  (parquet)
        recommendations/        user_id, items (the whole list), by variant (parquet)
        popular/                scope, category, rank, item_id, score    (parquet)
        stages/<stage>.json     each build stage's own report
        manifest.json           written last: the run is complete only when it exists

``layout.interactions`` (any output name of the stage table) is that output's URI.
docs/run-folder.md describes the same layout for readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.stages import PIPELINE
from jobs.storage import absolute_uri
from store.contract import check_name


def dated_path(path: str | None, run_date: str) -> str | None:
    """Put the run date into a configured path: ``{run_date}`` stands for YYYY-MM-DD."""
    return None if path is None else str(path).replace("{run_date}", run_date)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run's outputs, derived from the runs root and the (already checked) run date."""

    runs_root: str
    run_date: str

    @classmethod
    def from_config(cls, cfg, run_date: str) -> RunLayout:
        """Build the layout from the config's ``paths.runs_root``."""
        return cls(absolute_uri(cfg.paths.runs_root).rstrip("/"), run_date)

    @property
    def run_dir(self) -> str:
        return f"{self.runs_root}/{self.run_date}"

    def path(self, output: str) -> str:
        """The URI of one output named in the stage table."""
        if output not in PIPELINE.output_paths:
            raise ValueError(f"unknown output {output!r}; the stage table names {', '.join(PIPELINE.output_paths)}")
        return f"{self.run_dir}/{PIPELINE.output_paths[output]}"

    def variant_path(self, output: str, variant: str) -> str:
        """The URI of one variant's part of an output kept per variant (models, factors)."""
        return f"{self.path(output)}/{check_name(variant)}"

    def __getattr__(self, output: str) -> str:
        if output in PIPELINE.output_paths:
            return self.path(output)
        raise AttributeError(output)

    @property
    def tuning_choice(self) -> str:
        """The setting the tune stage chose, which train uses."""
        return f"{self.path('tuning')}/chosen.json"

    def stage_failure(self, stage: str) -> str:
        """Path of the record a stage leaves when it fails (any stage, publish included)."""
        return f"{self.run_dir}/stages/{stage}.failed.json"

    def stage_report(self, stage: str) -> str:
        """Path of the JSON report a build stage writes when it finishes."""
        if stage not in PIPELINE.build_stages:
            raise ValueError(f"{stage!r} is not a build stage; build stages are {', '.join(PIPELINE.build_stages)}")
        return f"{self.run_dir}/stages/{stage}.json"
