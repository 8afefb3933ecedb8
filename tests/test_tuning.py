"""Tuning: the budgeted search on its own, the tune stage choosing the better setting where the
answer is known, evaluate reusing the winner's model, and the last good setting kept when
tuning is off or fails."""

from __future__ import annotations

import random

import pytest

from conf import with_overrides
from conf.schema import TuneSection
from jobs import storage
from jobs.run_layout import RunLayout
from jobs.runner import JobError, run_stage
from jobs.tune import coordinate_search

RUN_DATE = "2026-11-29"


class FakeClock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_search_keeps_each_change_that_scores_higher_one_setting_at_a_time():
    scores = {(10.0, 0.05): 0.10, (1.0, 0.05): 0.20, (3.0, 0.05): 0.15, (1.0, 0.01): 0.18, (1.0, 0.2): 0.25}
    tried = []

    def score(setting):
        tried.append((setting["alpha"], setting["reg_param"]))
        return scores[tried[-1]]

    space = {"alpha": [1.0, 3.0, 10.0], "reg_param": [0.01, 0.2]}
    result = coordinate_search(score, {"alpha": 10.0, "reg_param": 0.05}, space, trials=10, time_limit_seconds=60)
    # 10.0 is the start's own alpha: not tried twice; reg_param is searched with the best alpha.
    assert tried == [(10.0, 0.05), (1.0, 0.05), (3.0, 0.05), (1.0, 0.01), (1.0, 0.2)]
    assert result.best == {"alpha": 1.0, "reg_param": 0.2} and result.best_score == 0.25
    assert [trial.setting for trial in result.trials][:2] == [{}, {"alpha": 1.0}]
    assert result.stopped_by == "space searched"


def test_the_search_stops_at_the_trial_budget_and_the_time_limit():
    space = {"alpha": [1.0, 2.0, 3.0, 4.0]}
    by_budget = coordinate_search(lambda s: s["alpha"], {"alpha": 0.5}, space, trials=3, time_limit_seconds=1e9)
    assert len(by_budget.trials) == 3 and by_budget.stopped_by == "trial budget (3)"
    assert by_budget.best == {"alpha": 2.0}
    by_time = coordinate_search(lambda s: s["alpha"], {"alpha": 0.5}, space, trials=99, time_limit_seconds=10,
                                clock=FakeClock(step=2.0))  # fmt: skip
    # Every reading of the clock is 2 s later: the third trial would start 14 s in, past 10.
    assert len(by_time.trials) == 2 and by_time.stopped_by == "time limit (10 s)"


def test_a_failing_trial_is_recorded_and_the_search_goes_on():
    def score(setting):
        if setting["alpha"] == 1.0:
            raise RuntimeError("executor lost")
        return setting["alpha"]

    result = coordinate_search(score, {"alpha": 0.5}, {"alpha": [1.0, 2.0]}, trials=5, time_limit_seconds=60)
    assert [trial.error for trial in result.trials] == [None, "RuntimeError: executor lost", None]
    assert result.best == {"alpha": 2.0}
    failing = coordinate_search(lambda s: 1 / 0, {"alpha": 0.5}, {}, trials=5, time_limit_seconds=60)
    assert failing.best_score is None and failing.trials[0].error.startswith("ZeroDivisionError")


def grouped_interactions(spark, groups: int = 6, users_per_group: int = 20, items_per_group: int = 12):
    """Users in groups, each touching items of its own group only: a taste one ALS factor
    cannot tell apart from another group's, and eight can."""
    rng = random.Random(11)
    rows = []
    for group in range(groups):
        items = [group * items_per_group + i for i in range(items_per_group)]
        for u in range(users_per_group):
            user = group * users_per_group + u
            for t, item in enumerate(rng.sample(items, 8)):
                rows.append((user, item, 1.0, 1_700_000_000 + t, 1))
    return spark.createDataFrame(rows, "user_idx int, item_idx int, weight double, ts long, events int")


def tuning_config(pipeline_config, **tune):
    space = tune.pop("space", {"rank": [8]})
    cfg = with_overrides(
        pipeline_config, {"train": {"rank": 1, "max_iter": 8, "alpha": 5.0}, "events": {"enabled": False}}
    )
    settings = TuneSection(**{**pipeline_config.tune.model_dump(), "trials": 5, "space": space, **tune})
    return cfg.model_copy(update={"tune": settings})


@pytest.fixture
def prepared(spark, pipeline_config):
    layout = RunLayout.from_config(pipeline_config, RUN_DATE)
    interactions = grouped_interactions(spark)
    interactions.write.parquet(layout.interactions)
    ids = interactions.select("user_idx").distinct().selectExpr("user_idx", "concat('u', user_idx) AS user_id")
    ids.write.parquet(layout.users)
    items = interactions.select("item_idx").distinct().selectExpr("item_idx", "concat('i', item_idx) AS item_id")
    items.write.parquet(layout.items)
    return layout


def test_tune_chooses_the_better_setting_and_evaluate_reuses_its_model(spark, pipeline_config, prepared):
    cfg = tuning_config(pipeline_config)
    report = run_stage(spark, cfg, prepared, "tune")
    start, changed = report["trials"]
    assert start["setting"] == {} and changed["setting"] == {"rank": 8}
    assert changed["ndcg_at_k"] > start["ndcg_at_k"] + 0.1, report["trials"]
    assert report["chosen"]["source"] == "tuned" and report["chosen"]["setting"]["rank"] == 8
    assert storage.read_json(spark, prepared.tuning_choice) == report["chosen"]

    evaluated = run_stage(spark, cfg, prepared, "evaluate")
    assert evaluated["holdout_models"] == {"default": {"reused": True}}
    assert evaluated["als"]["ndcg_at_k"] == pytest.approx(changed["ndcg_at_k"])
    trained = run_stage(spark, cfg, prepared, "train")
    assert trained["variants"]["default"]["params"]["rank"] == 8


def test_trials_on_a_user_sample_choose_alike_and_evaluate_scores_that_sample_with_the_winner(
    spark, pipeline_config, prepared
):
    cfg = tuning_config(pipeline_config, train_users=60, max_users=40)
    report = run_stage(spark, cfg, prepared, "tune")
    assert (report["trained_on"], report["users_trained"], report["users_scored"]) == ("user sample", 60, 40)
    start, changed = report["trials"]
    assert changed["ndcg_at_k"] > start["ndcg_at_k"] + 0.1, report["trials"]
    assert report["chosen"]["setting"]["rank"] == 8
    assert len(storage.list_names(spark, prepared.holdout_models)) == 1, "the winner is kept for evaluate"

    evaluated = run_stage(spark, cfg, prepared, "evaluate")
    assert evaluated["holdout_models"] == {"default": {"reused": True}}
    assert (evaluated["split"]["user_sample"], evaluated["split"]["users_evaluated"]) == (60, 60)
    # Every sampled user has 8 interactions, 7 of them in training: the sample's part of the split.
    assert evaluated["split"]["train_pairs"] == 60 * 7
    assert evaluated["als"]["ndcg_at_k"] > evaluated["popularity"]["ndcg_at_k"]
    other_sample = run_stage(spark, tuning_config(pipeline_config, train_users=80, max_users=40), prepared, "evaluate")
    assert other_sample["holdout_models"] == {"default": {"reused": False}}, "another sample's model is not reused"
    assert other_sample["split"]["user_sample"] == 80


def test_evaluate_off_the_tune_sample_fits_the_winner_on_the_whole_split(spark, pipeline_config, prepared):
    cfg = tuning_config(pipeline_config, train_users=60, max_users=40)
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"on_tune_sample": False})})
    assert run_stage(spark, cfg, prepared, "tune")["trained_on"] == "user sample"
    assert storage.list_names(spark, prepared.holdout_models) == [], "a sample's model is not the split's"

    evaluated = run_stage(spark, cfg, prepared, "evaluate")
    assert evaluated["holdout_models"] == {"default": {"reused": False}}
    assert (evaluated["split"]["user_sample"], evaluated["split"]["users_evaluated"]) == (None, 120)
    assert storage.list_names(spark, prepared.holdout_models) != []
    whole = tuning_config(pipeline_config, train_users=120)
    assert run_stage(spark, whole, prepared, "tune")["trained_on"] == "whole split"


def earlier_run(spark, layout: RunLayout, run_date: str, setting: dict, gate_passed: bool = True) -> None:
    manifest = {"tuning": {"chosen": {"setting": setting, "source": "tuned"}}, "gate": {"passed": gate_passed}}
    storage.write_json(spark, RunLayout(layout.runs_root, run_date).manifest, manifest)


def test_with_tuning_off_the_last_good_setting_is_kept(spark, pipeline_config, prepared):
    good = {"alpha": 2.0, "reg_param": 0.1, "weight_transform": "none", "rank": 6, "max_iter": 7}
    earlier_run(spark, prepared, "2026-11-20", good)
    earlier_run(spark, prepared, "2026-11-25", {**good, "rank": 3}, gate_passed=False)  # held: not good
    earlier_run(spark, prepared, "2026-12-01", {**good, "rank": 5})  # later than this run: not earlier
    report = run_stage(spark, tuning_config(pipeline_config, enabled=False, train_users=60), prepared, "tune")
    assert report["chosen"] == {
        "setting": good, "source": "last_good", "from_run": "2026-11-20",
        "reason": "tuning is off; the last good setting, of run 2026-11-20",
    }  # fmt: skip
    evaluated = run_stage(spark, tuning_config(pipeline_config, enabled=False, train_users=60), prepared, "evaluate")
    assert evaluated["holdout_models"] == {"default": {"reused": False}}, "nothing kept: evaluate trains once"
    assert evaluated["split"]["user_sample"] is None, "no tune sample to score with tuning off"


def test_when_every_trial_fails_the_train_section_is_used(spark, pipeline_config, prepared, monkeypatch):
    from jobs import train

    def broken_fit(*_):
        raise RuntimeError("no executors")

    monkeypatch.setattr(train, "fit_als", broken_fit)
    report = run_stage(spark, tuning_config(pipeline_config), prepared, "tune")
    assert [trial["error"] for trial in report["trials"]] == ["RuntimeError: no executors"] * 2
    assert report["chosen"]["source"] == "config"
    assert report["chosen"]["setting"]["rank"] == 1
    assert report["chosen"]["reason"] == "all 2 trials failed; no earlier good run, so the train section"


def test_an_empty_holdout_keeps_the_last_good_setting(spark, pipeline_config, prepared):
    cfg = tuning_config(pipeline_config)
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"min_user_interactions": 10_000})})
    report = run_stage(spark, cfg, prepared, "tune")
    assert report["chosen"]["source"] == "config"
    assert report["chosen"]["reason"].startswith("nothing to tune on (the holdout is empty")


def test_evaluate_refuses_a_split_made_with_other_settings(spark, pipeline_config, prepared):
    cfg = tuning_config(pipeline_config, enabled=False)
    run_stage(spark, cfg, prepared, "tune")
    reseeded = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"seed": 99})})
    with pytest.raises(JobError, match="holdout split was made with .* run the tune stage again first"):
        run_stage(spark, reseeded, prepared, "evaluate")


def test_the_nested_check_chooses_without_the_holdout_and_scores_on_it(spark, pipeline_config):
    from jobs.holdout import split_interactions
    from tools.tuning_check import inner_split, nested_check

    cfg = tuning_config(pipeline_config)
    split = split_interactions(grouped_interactions(spark), cfg.evaluate).cache()
    outer_held = {(r.user_idx, r.item_idx) for r in split.where("holdout").collect()}
    inner_rows = {(r.user_idx, r.item_idx) for r in inner_split(split, cfg).collect()}
    assert inner_rows and not inner_rows & outer_held, "the inner search never sees the outer holdout"
    found = nested_check(cfg, split)
    assert found["chosen"]["rank"] == 8, "eight factors tell the six groups apart, one cannot"
    assert found["outer_ndcg_at_k"]["chosen"] > found["outer_ndcg_at_k"]["start"]
