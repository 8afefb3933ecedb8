"""The one table of the pipeline's stages. Everything else derives from it: the run folder's
paths (jobs/run_layout.py), the order and names the pipeline command accepts, the reports
finalize requires, which reports a re-run makes stale, and the Airflow DAG's tasks and edges.

Adding a stage is one entry here plus one module with ``run(spark, cfg, layout) -> dict`` and
``main(argv)``. Standard library only: the DAG file imports this table.

Kinds of stage:
- ``build`` stages write outputs into the run folder and a report (``stages/<name>.json``);
- ``finalize`` reads every build stage's report and writes ``manifest.json``, last;
- ``gate`` reads the manifest's quality-gate decision: in the DAG a branch to publish or to
  holding the run, in the pipeline command a refusal when the run is held;
- ``publish`` reads a completed run and writes nothing into its folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

BUILD, FINALIZE, GATE, PUBLISH = "build", "finalize", "gate", "publish"


@dataclass(frozen=True)
class Stage:
    """One stage: its name, the module that runs it, what it reads and what it writes."""

    name: str
    module: str
    kind: str
    summary: str
    reads: tuple[str, ...] = ()
    # Output name -> path inside the run folder.
    writes: Mapping[str, str] = field(default_factory=dict)
    # Stages that must come first although nothing of theirs is read.
    after: tuple[str, ...] = ()

    @property
    def script(self) -> str:
        """The job's file relative to the repository root, for spark-submit."""
        return self.module.replace(".", "/") + ".py"


STAGES: tuple[Stage, ...] = (
    Stage(
        "export_events", "jobs.export_events", BUILD, "the day's events from Redis, experiment reports",
        writes={"events": "events", "experiments": "experiments"},
    ),
    Stage(
        "prepare", "jobs.prepare", BUILD, "cleaned interactions (input log and events), id maps, quarantine",
        reads=("events",),
        writes={
            "interactions": "prepared/interactions",
            "users": "prepared/users",
            "items": "prepared/items",
            "item_meta": "prepared/item_meta",
            "quarantine": "quarantine/interactions",
            "quarantine_items": "quarantine/items",
        },
    ),
    Stage(
        "tune", "jobs.tune", BUILD, "the holdout split, a budgeted search for the ALS setting, the winner's model",
        reads=("interactions",),
        writes={
            "split": "evaluation/split",
            "split_settings": "evaluation/split.json",
            "holdout_models": "evaluation/models",
            "tuning": "tuning",
        },
    ),
    Stage(
        "train", "jobs.train", BUILD, "an ALS model and its factors per variant, with the chosen setting",
        reads=("interactions", "users", "items", "tuning"),
        writes={"models": "models", "factors": "factors"},
    ),
    Stage(
        "evaluate", "jobs.evaluate", BUILD, "holdout metrics of every variant and of popularity, by slice",
        reads=("split", "holdout_models", "tuning", "items", "item_meta"),
    ),
    Stage(
        "recommend", "jobs.recommend", BUILD, "top-N lists per variant and popular lists",
        reads=("interactions", "users", "items", "item_meta", "models"),
        writes={"recommendations": "recommendations", "popular": "popular", "user_context": "user_context"},
    ),
    Stage(
        "similar", "jobs.similar", BUILD, "item-to-item lists, cold items per category, cold-start evaluation",
        reads=("interactions", "items", "item_meta", "models"),
        writes={"similar": "similar", "cold": "cold"},
    ),
    Stage(
        "finalize", "jobs.finalize", FINALIZE, "manifest.json, the completion marker",
        reads=("recommendations", "popular"),
        writes={"manifest": "manifest.json"},
    ),
    Stage(
        "quality_gate", "jobs.quality_gate", GATE, "publish, or hold the run: NDCG@k vs popularity and the current run",
        reads=("manifest",),
    ),
    Stage(
        "publish", "jobs.publish", PUBLISH, "the run in Redis, made current in one atomic step",
        reads=("manifest", "recommendations", "popular", "user_context", "similar", "cold", "item_meta"),
        after=("quality_gate",),
    ),
)  # fmt: skip


class StageTable:
    """A table of stages and everything derived from it."""

    def __init__(self, stages: tuple[Stage, ...]):
        self.stages = stages
        self.names = tuple(stage.name for stage in stages)
        self.build_stages = tuple(stage.name for stage in stages if stage.kind == BUILD)
        paths: dict[str, str] = {}
        for stage in stages:
            for output, path in stage.writes.items():
                if output in paths:
                    raise ValueError(f"output {output!r} is written by two stages")
                paths[output] = path
        self.output_paths = MappingProxyType(paths)
        self.writer_of = MappingProxyType({output: stage.name for stage in stages for output in stage.writes})

    def stage(self, name: str) -> Stage:
        """The stage with this name; ValueError naming the known ones otherwise."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"unknown stage {name!r}; the stages are {', '.join(self.names)}")

    def direct_inputs(self, name: str) -> set[str]:
        """The stages whose outputs ``name`` reads (finalize reads every build stage's report)."""
        stage = self.stage(name)
        inputs = {self.writer_of[output] for output in stage.reads} | set(stage.after)
        if stage.kind == FINALIZE:
            inputs |= set(self.build_stages)
        return inputs - {name}

    def all_inputs(self, name: str) -> set[str]:
        """Every stage ``name`` depends on, directly or not."""
        found, pending = set(), list(self.direct_inputs(name))
        while pending:
            upstream = pending.pop()
            if upstream not in found:
                found.add(upstream)
                pending += self.direct_inputs(upstream)
        return found

    def dag_edges(self) -> list[tuple[str, str]]:
        """(upstream, downstream) pairs for the DAG: the direct inputs, without edges already implied."""
        edges = []
        for stage in self.names:
            inputs = self.direct_inputs(stage)
            implied = {earlier for upstream in inputs for earlier in self.all_inputs(upstream)}
            edges += [(upstream, stage) for upstream in self.names if upstream in inputs - implied]
        return edges

    def stages_reading(self, name: str) -> list[str]:
        """Every build stage that reads, directly or not, what ``name`` writes: re-running ``name``
        makes their reports stale."""
        return [stage for stage in self.build_stages if name in self.all_inputs(stage)]


PIPELINE = StageTable(STAGES)
