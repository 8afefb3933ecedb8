"""The sample-data generator: deterministic, skewed, and honest about the bad rows it injects."""

import json

import pytest

from conf import with_overrides
from jobs.prepare import run as prepare_run
from jobs.run_layout import RunLayout
from tools import generate_data
from tools.generate_data import GeneratorParams

PARAMS = GeneratorParams(users=150, items=400, interactions=6000, categories=6, seed=11, days=30, end_date="2026-11-29")


def generated_rows(spark, out, partitions, fmt="csv"):
    generate_data.generate(spark, PARAMS, str(out), fmt, header=True, iso=False, bad=0, partitions=partitions)
    reader = spark.read.parquet if fmt == "parquet" else spark.read.option("header", True).csv
    return reader(str(out / "interactions"))


def test_same_seed_gives_the_same_rows_for_any_partitioning(spark, tmp_path):
    one = generated_rows(spark, tmp_path / "a", partitions=1)
    three = generated_rows(spark, tmp_path / "b", partitions=3)
    assert one.count() == three.count() > 0
    assert one.exceptAll(three).count() == 0 and three.exceptAll(one).count() == 0


def test_popularity_is_heavy_tailed_and_timestamps_stay_in_the_window(spark, tmp_path):
    rows = generated_rows(spark, tmp_path / "c", partitions=2).toPandas()
    counts = rows["item_id"].value_counts()
    top_tenth = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert top_tenth > 0.3, f"top 10% of items hold only {top_tenth:.0%} of interactions"
    stamps = rows["timestamp"].astype(int)
    assert stamps.max() < PARAMS.end_epoch and stamps.min() >= PARAMS.end_epoch - PARAMS.days * 86400
    assert rows["user_id"].str.match(r"^user_\d{7}$").all() and rows["item_id"].str.match(r"^item_\d{6}$").all()
    assert set(rows["rating"].astype(float).unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_users_stick_to_few_categories(spark, tmp_path):
    rows = generated_rows(spark, tmp_path / "d", partitions=2).toPandas()
    items = spark.read.option("header", True).csv(str(tmp_path / "d" / "items")).toPandas()
    primary = items.set_index("item_id")["categories"].str.split("|").str[0]
    rows["category"] = rows["item_id"].map(primary)
    top_share = rows.groupby("user_id")["category"].agg(lambda c: c.value_counts(normalize=True).iloc[0])
    # With 6 categories a taste-free user would put about 1/6 in the top one.
    assert top_share.median() > 0.4


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_injected_bad_rows_are_exactly_what_prepare_quarantines(spark, tmp_path, pipeline_config, fmt):
    summary = generate_data.generate(
        spark, PARAMS, str(tmp_path / "data"), fmt, header=True, iso=True, bad=12, partitions=2
    )
    assert json.loads((tmp_path / "data" / "_generated.json").read_text()) == summary
    cfg = with_overrides(
        pipeline_config, {"input": {"format": fmt, "timestamp_format": "iso"}, "prepare": {"max_bad_fraction": 0.5}}
    )
    report = prepare_run(spark, cfg, RunLayout.from_config(cfg, "2026-11-29"))
    assert report["quarantine"]["by_reason"] == summary["bad_rows"]["by_reason"]
    assert report["quarantine"]["rows"] == 12
    assert report["input"]["rows_valid"] == summary["interactions"]
