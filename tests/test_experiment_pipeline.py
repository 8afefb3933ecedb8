"""A nightly run with an experiment, through the real stages: every variant trained, evaluated,
recommended and published in one atomic step, and each user served their variant's list."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
from responses import without_rec_id

from conf import with_overrides
from jobs import pipeline, storage
from jobs.run_layout import RunLayout
from serving import create_app
from store.experiments import Assignment
from tools import generate_data
from tools.generate_data import GeneratorParams
from tools.run_reading import recommendation_rows

pytestmark = pytest.mark.slow

RUN_DATE = "2026-11-29"
PARAMS = GeneratorParams(users=120, items=150, interactions=4000, categories=5, seed=9, days=30, end_date=RUN_DATE)
EXPERIMENT = {
    "salt": "pipeline-test",
    "control": "als",
    "variants": {
        "als": {"share": 0.4},
        "als_small": {"share": 0.3, "train": {"rank": 4, "weight_transform": "none"}},
        "popular": {"share": 0.3, "model": "popularity"},
    },
}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory, redis_server, base_config):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    tmp = tmp_path_factory.mktemp("experiment-run")
    generate_data.generate(spark, PARAMS, str(tmp / "data"), "csv", header=True, iso=True, bad=0, partitions=2)
    cfg = with_overrides(base_config, {
        "paths": {"runs_root": str(tmp / "runs")},
        "input": {"path": str(tmp / "data" / "interactions")},
        "items": {"path": str(tmp / "data" / "items")},
        "store": {"url": redis_server.url},
        "train": {"rank": 8, "max_iter": 5, "num_user_blocks": 2, "num_item_blocks": 2},
        "recommend": {"top_n": 5},
        "api": {"max_n": 5, "default_n": 5},
        "experiments": {"ranking": EXPERIMENT},
    })  # fmt: skip
    layout = RunLayout.from_config(cfg, RUN_DATE)
    pipeline.run_stages(spark, cfg, layout, argparse.Namespace(stages=list(pipeline.PIPELINE.names)))
    return {"cfg": cfg, "layout": layout, "manifest": storage.read_json(spark, layout.manifest), "tmp": tmp}


@pytest.fixture(scope="module")
def lists(run):
    return recommendation_rows(run["layout"].recommendations)


def test_every_variant_has_n_unseen_items_for_every_user(run, lists):
    assert set(lists["variant"].astype(str)) == {"als", "als_small", "popular"}
    per_list = lists.groupby(["variant", "user_id"], observed=True)["rank"].agg(["count", "max"])
    assert (per_list["count"] == 5).all() and (per_list["max"] == 5).all()
    assert lists.groupby("variant", observed=True)["user_id"].nunique().nunique() == 1, "every user in every variant"
    parts = sorted((run["tmp"] / "data" / "interactions").glob("part-*.csv"))
    seen = pd.concat([pd.read_csv(part, dtype=str) for part in parts])
    assert len(seen) > 3000
    clash = lists.merge(seen[["user_id", "item_id"]], on=["user_id", "item_id"])
    assert clash.empty


def test_variants_differ_and_the_popularity_variant_follows_popularity(lists):
    by_variant = {v: group.sort_values(["user_id", "rank"]) for v, group in lists.groupby("variant", observed=True)}
    assert (
        not by_variant["als"]["item_id"]
        .reset_index(drop=True)
        .equals(by_variant["popular"]["item_id"].reset_index(drop=True))
    )
    popular_scores = by_variant["popular"].groupby("user_id")["score"].apply(list)
    assert all(scores == sorted(scores, reverse=True) for scores in popular_scores)
    assert all(float(score).is_integer() for score in by_variant["popular"]["score"]), "distinct-user counts"


def test_one_model_per_als_variant_and_metrics_per_variant(spark, run):
    layout, manifest = run["layout"], run["manifest"]
    assert storage.exists(spark, layout.variant_path("models", "als"))
    assert storage.exists(spark, layout.variant_path("models", "als_small"))
    assert not storage.exists(spark, layout.variant_path("models", "popular"))
    assert manifest["variants"] == ["als", "als_small", "popular"]
    assert manifest["experiment"] == {"name": "ranking", "salt": "pipeline-test", "control": "als",
                                      "shares": {"als": 0.4, "als_small": 0.3, "popular": 0.3}}  # fmt: skip
    metrics = manifest["metrics"]
    assert set(metrics["variants"]) == {"als", "als_small", "popular"}
    assert metrics["als"] == metrics["variants"]["als"]
    assert metrics["variants"]["popular"]["ndcg_at_k"] == pytest.approx(metrics["popularity"]["ndcg_at_k"])
    assert manifest["stages"]["train"]["variants"]["als_small"]["params"]["rank"] == 4


def test_all_variants_are_published_together_and_each_user_is_served_their_own(run, lists, redis_server):
    app = create_app({"store": {"url": redis_server.url}, "api": {"fallback_file": None, "max_n": 5, "default_n": 5}})
    try:
        client = app.test_client()
        first = client.get("/v1/recommendations/nobody").get_json()
        assert first["run_id"] == run["manifest"]["run_id"] and first["experiment"] == "ranking"
        meta_experiment = app.extensions["recs_store"].current().meta["experiment"]
        assignment = Assignment.from_meta(meta_experiment)
        for user_id in sorted(lists["user_id"].unique())[:30]:
            body = without_rec_id(client.get(f"/v1/recommendations/{user_id}?n=5").get_json())
            variant = assignment.variant_for(user_id)
            expected = lists[(lists["user_id"] == user_id) & (lists["variant"] == variant)].sort_values("rank")
            assert body["variant"] == variant and body["source"] == "personalized"
            assert [item["item_id"] for item in body["items"]] == list(expected["item_id"])
        forced = client.get(f"/v1/recommendations/{user_id}?n=5&variant=popular").get_json()
        expected = lists[(lists["user_id"] == user_id) & (lists["variant"] == "popular")].sort_values("rank")
        assert [item["item_id"] for item in forced["items"]] == list(expected["item_id"])
    finally:
        app.extensions["recs_store"].close()


def test_similar_lists_equal_a_brute_force_check_and_never_hold_the_item(spark, run):
    import numpy as np
    from pyspark.ml.recommendation import ALSModel

    layout, cfg = run["layout"], run["cfg"]
    similar = pd.read_parquet(layout.similar)
    assert not (similar["item_id"] == similar["similar_item_id"]).any()
    als = similar[similar["method"] == "als"]
    items = spark.read.parquet(layout.items).toPandas().set_index("item_idx")["item_id"]
    factors = ALSModel.load(layout.variant_path("models", "als")).itemFactors.toPandas()
    interactions = pd.read_parquet(layout.interactions)
    users = interactions.groupby("item_idx")["user_idx"].nunique()
    warm = factors[factors["id"].map(users).fillna(0) >= cfg.cold_start.min_users].sort_values("id")
    matrix = np.vstack(warm["features"].to_list())
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    ids = [items[idx] for idx in warm["id"]]
    sample = sorted(set(als["item_id"]))[:25]
    assert len(sample) == 25
    for item in sample:
        row = ids.index(item)
        expected = [ids[j] for j in np.argsort(-cosine[row], kind="stable")[: cfg.cold_start.similar_n]]
        got = als[als["item_id"] == item].sort_values("rank")
        assert list(got["similar_item_id"]) == expected, item
        assert np.allclose(got["score"], np.sort(cosine[row])[::-1][: cfg.cold_start.similar_n], atol=1e-4)


def test_cold_items_are_reachable_through_similar_lists_and_exploration(run, redis_server):
    layout, manifest = run["layout"], run["manifest"]
    cold = pd.read_parquet(layout.cold)
    similar = pd.read_parquet(layout.similar)
    assert len(cold) > 0 and set(similar.loc[similar["method"] == "content", "item_id"]) >= set(cold["item_id"])
    api = {"fallback_file": None, "exploration_slots": 2, "max_n": 5, "default_n": 5}
    app = create_app({"store": {"url": redis_server.url}, "api": api})
    try:
        client = app.test_client()
        cold_item = sorted(cold["item_id"])[0]
        body = client.get(f"/v1/similar/{cold_item}?n=5").get_json()
        assert body["method"] == "content" and len(body["items"]) == 5
        context = pd.read_parquet(layout.user_context)
        explorer = context[context["top_categories"].map(len) > 0]["user_id"].iloc[0]
        items = client.get(f"/v1/recommendations/{explorer}?n=5").get_json()["items"]
        new = [item["item_id"] for item in items if item["source"] == "new"]
        assert len(new) == 2 and set(new) <= set(cold["item_id"]) and items[-1]["source"] == "new"
    finally:
        app.extensions["recs_store"].close()
    evaluation = manifest["metrics"]["cold_start"]
    assert set(evaluation) >= {"cutoff", "new_items", "exploration", "similar_items"}, evaluation
    assert evaluation["new_items"] > 0 and evaluation["exploration"]["users"] > 0
    assert evaluation["similar_items"]["pairs"] > 0
    for part, measures in (("exploration", ("hit_rate_at_k", "recall_at_k")), ("similar_items", ("precision_at_k",))):
        for method in ("content", "popularity", "random"):
            for measure in measures:
                assert 0.0 <= evaluation[part][method][measure] <= 1.0, (part, method, measure)


def test_the_run_history_shows_the_published_runs_manifest(run, redis_server):
    from responses import assert_matches_openapi

    manifest = run["manifest"]
    app = create_app({"store": {"url": redis_server.url}, "api": {"fallback_file": None, "max_n": 5, "default_n": 5}})
    try:
        response = app.test_client().get("/v1/runs")
    finally:
        app.extensions["recs_store"].close()
    assert_matches_openapi(response, "/v1/runs")
    body = response.get_json()
    assert body["current"] == manifest["run_id"]
    (summary,) = [run for run in body["runs"] if run["run_id"] == manifest["run_id"]]
    assert summary["current"] is True and summary["run_date"] == RUN_DATE and summary["experiment"] == "ranking"
    assert summary["timings_seconds"] == manifest["timings_seconds"]
    assert summary["metrics"]["als"]["ndcg_at_k"] == manifest["metrics"]["als"]["ndcg_at_k"]
    assert summary["metrics"]["popularity"]["ndcg_at_k"] == manifest["metrics"]["popularity"]["ndcg_at_k"]
    assert summary["counts"]["rows_read"] == manifest["counts"]["input"]["rows_read"]
    assert summary["counts"]["users"] == manifest["counts"]["prepared"]["users"]
    assert summary["finalized_at"] == manifest["finalized_at"]
