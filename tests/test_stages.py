"""The stage table: what derives from it, and that adding a stage is one entry."""

import pytest

from jobs.stages import BUILD, PIPELINE, STAGES, Stage, StageTable


def test_the_pipeline_order_and_kinds():
    assert PIPELINE.names == (
        "export_events", "prepare", "tune", "train", "evaluate", "recommend", "similar", "finalize", "quality_gate",
        "publish",
    )  # fmt: skip
    assert PIPELINE.build_stages == ("export_events", "prepare", "tune", "train", "evaluate", "recommend", "similar")


def test_rerunning_a_stage_makes_the_reports_of_its_readers_stale():
    assert PIPELINE.stages_reading("export_events") == ["prepare", "tune", "train", "evaluate", "recommend", "similar"]
    assert PIPELINE.stages_reading("prepare") == ["tune", "train", "evaluate", "recommend", "similar"]
    assert PIPELINE.stages_reading("tune") == ["train", "evaluate", "recommend", "similar"]
    assert PIPELINE.stages_reading("train") == ["recommend", "similar"]
    assert PIPELINE.stages_reading("evaluate") == []


def test_adding_a_stage_is_one_entry():
    bundles = Stage("bundles", "jobs.bundles", BUILD, "items bought together", reads=("interactions",),
                    writes={"bundles": "bundles"})  # fmt: skip
    publish = STAGES[-1]
    with_bundles = (*STAGES[:-2], bundles, STAGES[-2], Stage(publish.name, publish.module, publish.kind,
                    publish.summary, reads=(*publish.reads, "bundles")))  # fmt: skip
    table = StageTable(with_bundles)
    assert table.output_paths["bundles"] == "bundles"
    assert "bundles" in table.build_stages, "finalize now requires its report"
    assert ("prepare", "bundles") in table.dag_edges() and ("bundles", "finalize") in table.dag_edges()
    assert table.stages_reading("prepare") == ["tune", "train", "evaluate", "recommend", "similar", "bundles"]
    assert table.stage("bundles").script == "jobs/bundles.py"


def test_an_output_written_by_two_stages_is_refused():
    twice = Stage("again", "jobs.again", BUILD, "clash", writes={"models": "elsewhere"})
    with pytest.raises(ValueError, match="output .models. is written by two stages"):
        StageTable((*STAGES, twice))
