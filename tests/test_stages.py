"""The stage table: what derives from it, and that adding a stage is one entry."""

import pytest

from jobs.stages import BUILD, PIPELINE, STAGES, Stage, StageTable


def test_the_pipeline_order_and_kinds():
    assert PIPELINE.names == ("export_events", "prepare", "train", "evaluate", "recommend", "finalize", "publish")
    assert PIPELINE.build_stages == ("export_events", "prepare", "train", "evaluate", "recommend")


def test_rerunning_a_stage_makes_the_reports_of_its_readers_stale():
    assert PIPELINE.stages_reading("export_events") == ["prepare", "train", "evaluate", "recommend"]
    assert PIPELINE.stages_reading("prepare") == ["train", "evaluate", "recommend"]
    assert PIPELINE.stages_reading("train") == ["recommend"]
    assert PIPELINE.stages_reading("evaluate") == []


def test_adding_a_stage_is_one_entry():
    similar = Stage("similar", "jobs.similar", BUILD, "item-to-item lists", reads=("factors",),
                    writes={"similar": "similar"})  # fmt: skip
    publish = STAGES[-1]
    with_similar = (*STAGES[:-2], similar, STAGES[-2], Stage(publish.name, publish.module, publish.kind,
                    publish.summary, reads=(*publish.reads, "similar")))  # fmt: skip
    table = StageTable(with_similar)
    assert table.output_paths["similar"] == "similar"
    assert "similar" in table.build_stages, "finalize now requires its report"
    assert ("train", "similar") in table.dag_edges() and ("similar", "finalize") in table.dag_edges()
    assert table.stages_reading("train") == ["recommend", "similar"]
    assert table.stage("similar").script == "jobs/similar.py"


def test_an_output_written_by_two_stages_is_refused():
    twice = Stage("again", "jobs.again", BUILD, "clash", writes={"models": "elsewhere"})
    with pytest.raises(ValueError, match="output .models. is written by two stages"):
        StageTable((*STAGES, twice))
