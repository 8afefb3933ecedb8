"""End to end: a real `airflow dags test` run of the nightly DAG, every task a spark-submit,
on a generated MovieLens-style dataset (tab-separated, no header, epoch seconds) with
injected bad rows, published to a real redis-server and read back through the API. Then a
re-run of two stages through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jobs.stages import PIPELINE
from tools import generate_data
from tools.bundle import bundle
from tools.generate_data import GeneratorParams
from tools.processes import ROOT, project_env
from tools.run_reading import recommendation_rows

pytestmark = pytest.mark.slow

RUN_DATE = "2026-11-29"
TOP_N = 10
PARAMS = GeneratorParams(users=400, items=300, interactions=24000, categories=8, seed=5, days=60, end_date=RUN_DATE)
BAD_ROWS = 18


def pipeline_env(tmp: Path, redis_url: str) -> dict[str, str]:
    overrides = {
        "RECS__STORE__URL": redis_url,
        "RECS__INPUT__PATH": str(tmp / "data" / "interactions"),
        "RECS__INPUT__FORMAT": "tsv",
        "RECS__INPUT__HEADER": "false",
        "RECS__INPUT__NAMES": "[user, item, rating, ts]",
        "RECS__INPUT__COLUMNS__USER": "user",
        "RECS__INPUT__COLUMNS__ITEM": "item",
        "RECS__INPUT__COLUMNS__WEIGHT": "rating",
        "RECS__INPUT__COLUMNS__TIMESTAMP": "ts",
        "RECS__INPUT__TIMESTAMP_FORMAT": "epoch",
        "RECS__ITEMS__PATH": str(tmp / "data" / "items"),
        "RECS__PATHS__RUNS_ROOT": str(tmp / "runs"),
        "RECS__SPARK__CHECKPOINT_DIR": str(tmp / "checkpoints"),
        "RECS__SPARK__CONF__SPARK.DRIVER.MEMORY": "1g",
        "RECS__TRAIN__RANK": "16",
        "RECS__TRAIN__MAX_ITER": "16",  # above 15 on purpose: needs the checkpoint directory
        "RECS__TUNE__TRIALS": "3",
        "RECS__RECOMMEND__TOP_N": str(TOP_N),
        "RECS__API__MAX_N": str(TOP_N),
        "RECS__SCHEDULE__RETRIES": "0",
    }
    return project_env(
        **overrides,
        AIRFLOW_HOME=str(tmp / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_SPARK_RECS='{"conn_type": "spark", "host": "local[2]"}',
        RECS_BUNDLE=str(bundle(tmp / "recs_jobs.zip")),
    )


def run_logged(command: list[str], env: dict[str, str], log: Path, timeout: int) -> None:
    with open(log, "w") as out:
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"{' '.join(command)} exited {result.returncode}; log tail:\n{tail}", pytrace=False)


@pytest.fixture(scope="module")
def dag_run(spark, tmp_path_factory, redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    tmp = tmp_path_factory.mktemp("e2e")
    generated = generate_data.generate(
        spark, PARAMS, str(tmp / "data"), "tsv", header=False, iso=False, bad=BAD_ROWS, partitions=2
    )
    env = pipeline_env(tmp, redis_server.url)
    airflow = str(Path(sys.executable).parent / "airflow")
    run_logged([airflow, "db", "migrate"], env, tmp / "db.log", timeout=300)
    run_logged([airflow, "dags", "test", "nightly_recommendations", RUN_DATE], env, tmp / "dag.log", timeout=1500)
    run_dir = tmp / "runs" / RUN_DATE
    return {"tmp": tmp, "env": env, "generated": generated, "run_dir": run_dir,
            "manifest": json.loads((run_dir / "manifest.json").read_text())}  # fmt: skip


def valid_input(tmp: Path) -> pd.DataFrame:
    files = [p for p in (tmp / "data" / "interactions").glob("part-*") if "bad-rows" not in p.name]
    frames = [pd.read_csv(p, sep="\t", header=None, names=["user", "item", "rating", "ts"], dtype=str) for p in files]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def recommendations(dag_run):
    return recommendation_rows(dag_run["run_dir"] / "recommendations")


def test_recommendations_parquet_schema(spark, dag_run):
    schema = spark.read.parquet(str(dag_run["run_dir"] / "recommendations")).schema.simpleString()
    assert schema == "struct<user_id:string,items:array<struct<item_id:string,score:double>>,variant:string>"
    popular = spark.read.parquet(str(dag_run["run_dir"] / "popular")).schema.simpleString()
    assert popular == "struct<scope:string,category:string,rank:int,item_id:string,score:double>"


def test_every_user_gets_n_ranked_items(recommendations):
    per_user = recommendations.groupby("user_id")["rank"].agg(["count", "min", "max", "nunique"])
    assert (per_user["count"] == TOP_N).all() and (per_user["nunique"] == TOP_N).all()
    assert (per_user["min"] == 1).all() and (per_user["max"] == TOP_N).all()
    ordered = recommendations.sort_values(["user_id", "rank"])
    assert (ordered.groupby("user_id")["score"].diff().dropna() <= 1e-9).all(), "scores fall with rank"


def test_no_seen_item_is_ever_recommended(dag_run, recommendations):
    seen = valid_input(dag_run["tmp"])[["user", "item"]].drop_duplicates()
    clash = recommendations.merge(seen, left_on=["user_id", "item_id"], right_on=["user", "item"])
    assert clash.empty, clash.head()


def test_string_ids_round_trip(dag_run, recommendations):
    valid = valid_input(dag_run["tmp"])
    assert set(recommendations["user_id"]) == set(valid["user"])
    assert set(recommendations["item_id"]) <= set(valid["item"])
    assert recommendations["user_id"].str.match(r"^user_\d{7}$").all()


def test_quarantine_counts_match_the_injected_bad_rows(dag_run):
    counts = dag_run["manifest"]["counts"]
    assert counts["quarantine"]["by_reason"] == dag_run["generated"]["bad_rows"]["by_reason"]
    assert counts["quarantine"]["rows"] == BAD_ROWS
    assert counts["input"]["rows_valid"] == dag_run["generated"]["interactions"]
    quarantined = pd.read_parquet(dag_run["run_dir"] / "quarantine" / "interactions")
    assert len(quarantined) == BAD_ROWS


def test_als_beats_popularity_on_ndcg_on_the_same_holdout(dag_run):
    metrics = dag_run["manifest"]["metrics"]
    assert metrics["k"] == 10 and metrics["split"]["method"] == "latest_by_timestamp"
    assert metrics["als"]["users"] == metrics["popularity"]["users"] > 0
    assert metrics["als"]["ndcg_at_k"] > metrics["popularity"]["ndcg_at_k"]


def test_manifest_is_complete(dag_run):
    manifest = dag_run["manifest"]
    assert manifest["run_id"].startswith(f"{RUN_DATE}_")
    assert set(manifest["timings_seconds"]) == set(PIPELINE.build_stages)
    assert len(manifest["tuning"]["trials"]) == 3 and manifest["tuning"]["chosen"]["source"] == "tuned"
    assert manifest["gate"]["passed"] is True, manifest["gate"]
    assert manifest["stages"]["evaluate"]["holdout_models"] == {"default": {"reused": True}}
    assert manifest["variants"] == ["default"] and manifest["experiment"] is None
    assert manifest["config"]["input"]["format"] == "tsv"
    assert manifest["config"]["train"]["max_iter"] == 16
    chosen = manifest["tuning"]["chosen"]["setting"]
    used = manifest["stages"]["train"]["variants"]["default"]["params"]
    assert {key: used[key] for key in chosen} == chosen, "train used the setting tune chose"
    assert manifest["counts"]["output"]["users"] == manifest["counts"]["prepared"]["users"]
    assert manifest["code_version"]
    popular = pd.read_parquet(dag_run["run_dir"] / "popular")
    assert (popular["scope"] == "all").sum() == 100
    assert popular.loc[popular["scope"] == "category", "category"].nunique() == PARAMS.categories


def test_the_run_is_published_and_served(dag_run, recommendations, redis_server):
    import redis

    from serving import create_app
    from store.contract import KeyLayout
    from store.registry import count_user_keys

    run_id = dag_run["manifest"]["run_id"]
    client = redis.Redis.from_url(redis_server.url)
    assert client.get(KeyLayout("recs").current).decode() == run_id
    assert count_user_keys(client, KeyLayout("recs"), run_id) == recommendations["user_id"].nunique()
    app = create_app({"store": {"url": redis_server.url}, "api": {"max_n": TOP_N, "fallback_file": None}})
    try:
        for user_id in sorted(recommendations["user_id"].unique())[:5]:
            body = app.test_client().get(f"/v1/recommendations/{user_id}?n={TOP_N}").get_json()
            expected = recommendations[recommendations["user_id"] == user_id].sort_values("rank")
            assert body["run_id"] == run_id and body["source"] == "personalized"
            assert [item["item_id"] for item in body["items"]] == list(expected["item_id"])
            assert [item["score"] for item in body["items"]] == pytest.approx(list(expected["score"]), rel=1e-5)
    finally:
        app.extensions["recs_store"].close()


def test_rerun_of_stages_through_the_cli_replaces_the_run(dag_run, recommendations):
    before = dag_run["manifest"]["run_id"]
    command = [sys.executable, "-m", "jobs.pipeline", "--run-date", RUN_DATE, "--stages", "recommend,finalize,publish"]
    run_logged(command, dag_run["env"], dag_run["tmp"] / "rerun.log", timeout=600)
    manifest = json.loads((dag_run["run_dir"] / "manifest.json").read_text())
    assert manifest["run_id"] > before
    again = recommendation_rows(dag_run["run_dir"] / "recommendations")
    assert len(again) == len(recommendations)
    assert set(again["user_id"]) == set(recommendations["user_id"])
    import redis

    from store.contract import KeyLayout

    current = redis.Redis.from_url(dag_run["env"]["RECS__STORE__URL"]).get(KeyLayout("recs").current)
    assert current.decode() == manifest["run_id"], "the re-run of the same date was published over the old one"


def test_events_posted_to_the_api_become_interactions_of_the_next_run(dag_run, recommendations, redis_server):
    """The feedback loop: events through the API, exported by the DAG's task, read by prepare."""
    import datetime as dt

    import redis

    from serving import create_app

    user = sorted(recommendations["user_id"].unique())[0]
    valid = valid_input(dag_run["tmp"])
    catalogue = pd.read_csv(next((dag_run["tmp"] / "data" / "items").glob("part-*.csv")), dtype=str)["item_id"]
    fresh = sorted(set(catalogue) - set(valid.loc[valid["user"] == user, "item"]))[0]  # known, not seen by user
    app = create_app({"store": {"url": redis_server.url}, "api": {"fallback_file": None}})
    try:
        client = app.test_client()
        rec_id = client.get(f"/v1/recommendations/{user}").get_json()["rec_id"]
        events = [{"user_id": user, "item_id": fresh, "type": kind, "rec_id": rec_id}
                  for kind in ("impression", "click", "conversion")]  # fmt: skip
        events.append({"user_id": "user_from_events", "item_id": fresh, "type": "click"})
        events.append({"user_id": user, "item_id": "not_in_the_catalogue", "type": "click"})
        assert client.post("/v1/events", json=events).status_code == 202
    finally:
        app.extensions["recs_store"].close()
    seconds, _ = redis.Redis.from_url(redis_server.url).time()
    next_run = (dt.datetime.fromtimestamp(seconds, dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    airflow = str(Path(sys.executable).parent / "airflow")
    tmp, env = dag_run["tmp"], dag_run["env"]
    run_logged([airflow, "tasks", "test", "nightly_recommendations", "export_events", next_run], env,
               tmp / "export.log", timeout=600)  # fmt: skip
    export = json.loads((tmp / "runs" / next_run / "events" / "export.json").read_text())
    assert (export["rows"], export["by_type"]) == (5, {"click": 3, "conversion": 1, "impression": 1})
    command = [sys.executable, "-m", "jobs.pipeline", "--run-date", next_run, "--stages", "prepare"]
    run_logged(command, env, tmp / "next-prepare.log", timeout=600)
    prepared = tmp / "runs" / next_run / "prepared"
    users, items = pd.read_parquet(prepared / "users"), pd.read_parquet(prepared / "items")
    interactions = pd.read_parquet(prepared / "interactions")
    item_idx = items.loc[items["item_id"] == fresh, "item_idx"].item()
    weights = interactions[interactions["item_idx"] == item_idx].merge(users, on="user_idx")
    from_events = weights[weights["user_id"].isin([user, "user_from_events"])]
    assert dict(zip(from_events["user_id"], from_events["weight"], strict=True)) == {user: 6.0, "user_from_events": 1.0}
    assert "not_in_the_catalogue" not in set(items["item_id"])
    prepare_report = json.loads((tmp / "runs" / next_run / "stages" / "prepare.json").read_text())
    assert prepare_report["events"]["quarantine_by_reason"] == {"unknown_event_item": 1}
