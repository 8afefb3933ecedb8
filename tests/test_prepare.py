"""prepare's transforms on tiny inline DataFrames, and its reader on real files of each format."""

import pytest
from pyspark.testing import assertDataFrameEqual

from conf import with_overrides
from jobs import prepare
from jobs.run_layout import RunLayout
from jobs.runner import JobError
from jobs.sources import read_source

STD_SCHEMA = (
    "case string, user_raw string, item_raw string, weight_raw string, ts_raw string,"
    " raw_record string, source_file string"
)

# (case, user, item, weight, ts, raw_record) -> expected reason (None = valid)
ROWS = [
    (("ok", "u1", "i1", "3", "1700000000", None), None),
    (("ok_iso", "u1", "i2", "1.5", "2024-01-01T00:00:00Z", None), None),
    (("ok_trimmed", " u2 ", " i1 ", " 2 ", " 1700000000 ", None), None),
    (("zero_weight", "u2", "i3", "0", "0", None), None),
    (("malformed", "u3", None, None, None, "u3;i1"), "malformed_row"),
    (("null_user", None, "i1", "1", "1", None), "missing_user"),
    (("blank_user", "   ", "i1", "1", "1", None), "missing_user"),
    (("empty_item", "u1", "", "1", "1", None), "missing_item"),
    (("long_user", "u" * 257, "i1", "1", "1", None), "user_id_too_long"),
    (("ctrl_item", "u1", "i\t1", "1", "1", None), "item_id_control_chars"),
    (("no_weight", "u1", "i1", "", "1", None), "missing_weight"),
    (("text_weight", "u1", "i1", "abc", "1", None), "bad_weight"),
    (("neg_weight", "u1", "i1", "-0.5", "1", None), "negative_weight"),
    (("nan_weight", "u1", "i1", "NaN", "1", None), "non_finite_weight"),
    (("inf_weight", "u1", "i1", "inf", "1", None), "non_finite_weight"),
    (("neg_inf_weight", "u1", "i1", "-Infinity", "1", None), "non_finite_weight"),
    (("no_ts", "u1", "i1", "1", None, None), "missing_timestamp"),
    (("text_ts", "u1", "i1", "1", "last tuesday", None), "bad_timestamp"),
    (("bad_date", "u1", "i1", "1", "2024-13-45", None), "bad_timestamp"),
    (("neg_ts", "u1", "i1", "1", "-1", None), "negative_timestamp"),
    (("pre_epoch_iso", "u1", "i1", "1", "1969-12-31T23:59:59Z", None), "negative_timestamp"),
    (("inf_ts", "u1", "i1", "1", "1e400", None), "non_finite_timestamp"),
    (("millis_as_seconds", "u1", "i1", "1", "1700000000000", None), "timestamp_out_of_range"),
]


@pytest.fixture
def standardized(spark):
    rows = [(*row, "file:/input.csv") for row, _ in ROWS]
    return spark.createDataFrame(rows, STD_SCHEMA)


def test_every_row_gets_the_expected_reason(standardized):
    validated = prepare.validate_interactions(standardized, "auto")
    got = {row["case"]: row["reason"] for row in validated.select("case", "reason").collect()}
    assert got == {row[0]: reason for row, reason in ROWS}


def test_valid_rows_are_parsed_and_trimmed(spark, standardized):
    clean, _ = prepare.split_valid(prepare.validate_interactions(standardized, "auto"))
    expected = spark.createDataFrame(
        [
            ("u1", "i1", 3.0, 1700000000),
            ("u1", "i2", 1.5, 1704067200),
            ("u2", "i1", 2.0, 1700000000),
            ("u2", "i3", 0.0, 0),
        ],
        "user_id string, item_id string, weight double, ts long",
    )
    assertDataFrameEqual(clean, expected)


def test_quarantine_keeps_the_raw_text_and_reason(standardized):
    _, quarantine = prepare.split_valid(prepare.validate_interactions(standardized, "auto"))
    assert tuple(quarantine.columns) == prepare.QUARANTINE_COLUMNS
    rows = {row["reason"]: row for row in quarantine.collect()}
    assert rows["bad_weight"]["weight_raw"] == "abc"
    assert rows["malformed_row"]["raw_record"] == "u3;i1"
    assert quarantine.count() == sum(1 for _, reason in ROWS if reason)


def test_the_cached_rows_keep_raw_text_for_quarantine_only_and_split_alike(spark, standardized):
    validated = prepare.validate_interactions(standardized, "auto")
    slim = prepare.raw_text_on_bad_rows_only(validated)
    raw = [name for name in prepare.QUARANTINE_COLUMNS if name != "reason"]
    good = slim.where("reason IS NULL").select(*raw).collect()
    assert len(good) == 4 and all(value is None for row in good for value in row)
    for before, after in zip(prepare.split_valid(validated), prepare.split_valid(slim), strict=True):
        assertDataFrameEqual(after, before)


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [("epoch", "1700000000", 1700000000), ("epoch", "2024-01-01", None), ("epoch_ms", "1700000000123", 1700000000),
     ("iso", "2024-01-01 00:00:00", 1704067200), ("iso", "1700000000", None),
     ("auto", "2024-01-01T01:00:00+01:00", 1704067200)],
)  # fmt: skip
def test_timestamp_formats(spark, fmt, text, expected):
    df = spark.createDataFrame([("c", "u", "i", "1", text, None, "f")], STD_SCHEMA)
    row = prepare.validate_interactions(df, fmt).first()
    assert row["ts"] == expected
    assert (row["reason"] is None) == (expected is not None)


def test_without_timestamp_column_rows_are_valid_with_null_ts(spark):
    df = spark.createDataFrame([("c", "u", "i", "1", None, None, "f")], STD_SCHEMA)
    row = prepare.validate_interactions(df, None).first()
    assert row["reason"] is None and row["ts"] is None


def test_aggregate_sum_adds_weights_and_keeps_latest_ts(spark):
    clean = spark.createDataFrame(
        [("u1", "i1", 1.0, 10), ("u1", "i1", 2.0, 30), ("u1", "i2", 5.0, 20), ("u2", "i1", 1.0, None)],
        "user_id string, item_id string, weight double, ts long",
    )
    expected = spark.createDataFrame(
        [("u1", "i1", 3.0, 30, 2), ("u1", "i2", 5.0, 20, 1), ("u2", "i1", 1.0, None, 1)],
        "user_id string, item_id string, weight double, ts long, events int",
    )
    assertDataFrameEqual(prepare.aggregate_pairs(clean, "sum"), expected)


def test_aggregate_last_takes_the_latest_rating_and_breaks_time_ties_upward(spark):
    clean = spark.createDataFrame(
        [("u1", "i1", 5.0, 10), ("u1", "i1", 2.0, 30), ("u2", "i1", 1.0, 7), ("u2", "i1", 4.0, 7)],
        "user_id string, item_id string, weight double, ts long",
    )
    got = {
        (r["user_id"], r["item_id"]): (r["weight"], r["ts"]) for r in prepare.aggregate_pairs(clean, "last").collect()
    }
    assert got == {("u1", "i1"): (2.0, 30), ("u2", "i1"): (4.0, 7)}


def test_unknown_duplicate_policy_is_refused(spark):
    clean = spark.createDataFrame([("u", "i", 1.0, 1)], "user_id string, item_id string, weight double, ts long")
    with pytest.raises(ValueError, match="duplicate policy must be one of sum, last"):
        prepare.aggregate_pairs(clean, "mean")


def test_id_index_is_dense_and_ordered_by_id(spark):
    ids = spark.createDataFrame([("b",), ("a",), ("c",), ("a",), ("10",)], "user_id string")
    expected = spark.createDataFrame([("10", 0), ("a", 1), ("b", 2), ("c", 3)], "user_id string, user_idx int")
    assertDataFrameEqual(prepare.build_id_index(ids.repartition(3), "user_id", "user_idx"), expected)


def test_index_pairs_maps_both_ids(spark):
    pairs = spark.createDataFrame(
        [("ua", "ib", 2.0, 5, 1)], "user_id string, item_id string, weight double, ts long, events int"
    )
    users = spark.createDataFrame([("ua", 0)], "user_id string, user_idx int")
    items = spark.createDataFrame([("ia", 0), ("ib", 1)], "item_id string, item_idx int")
    expected = spark.createDataFrame(
        [(0, 1, 2.0, 5, 1)], "user_idx int, item_idx int, weight double, ts long, events int"
    )
    assertDataFrameEqual(prepare.index_pairs(pairs, users, items), expected)


def test_item_meta_splits_categories_and_dedupes(spark):
    raw = spark.createDataFrame(
        [
            ("i1", "B title", "Drama| Comedy|", None, "f"),
            ("i1", "A title", "Drama", None, "f"),
            ("", "x", "", None, "f"),
        ],
        "id string, name string, genres string, _corrupt_record string, source_file string",
    )
    parsed = prepare.standardize_item_meta(raw, {"item": "id", "title": "name", "categories": "genres"}, "|")
    marked = prepare.mark_duplicate_items(parsed)
    reasons = sorted((r["item_raw"], r["title"], r["reason"]) for r in marked.where("reason IS NOT NULL").collect())
    assert reasons == [("", "x", "missing_item"), ("i1", "B title", "duplicate_item")]
    kept = marked.where("reason IS NULL").select("item_id", "title", "categories")
    expected = spark.createDataFrame(
        [("i1", "A title", ["Drama"])], "item_id string, title string, categories array<string>"
    )
    assertDataFrameEqual(kept, expected)


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_reads_movielens_style_tsv_without_header(spark, tmp_path):
    write_lines(tmp_path / "u.data", ["196\t242\t3\t881250949", "186\t302\t3\t891717742", "22\t377"])
    raw = read_source(spark, str(tmp_path / "u.data"), "tsv", header=False, names=["user", "item", "rating", "ts"])
    validated = prepare.validate_interactions(
        prepare.standardize_interactions(raw, {"user": "user", "item": "item", "weight": "rating", "timestamp": "ts"}),
        "epoch",
    )
    rows = sorted((r["user_id"], r["item_id"], r["ts"], r["reason"]) for r in validated.collect())
    assert rows == [
        ("186", "302", 891717742, None),
        ("196", "242", 881250949, None),
        ("22", "377", None, "malformed_row"),
    ]


def test_reads_parquet_with_int64_ids_exactly(spark, tmp_path):
    big = 2**62 + 7  # beyond float precision: a numeric detour would corrupt it
    frame = spark.createDataFrame([(big, 5, 4.0, 1700000000)], "uid long, iid long, stars double, at long")
    frame.write.parquet(str(tmp_path / "in"))
    raw = read_source(spark, str(tmp_path / "in"), "parquet")
    std = prepare.standardize_interactions(raw, {"user": "uid", "item": "iid", "weight": "stars", "timestamp": "at"})
    row = prepare.validate_interactions(std, "auto").first()
    assert (row["user_id"], row["item_id"], row["reason"]) == (str(big), "5", None)


def run_prepare(spark, cfg, run_date="2026-11-29"):
    layout = RunLayout.from_config(cfg, run_date)
    return layout, prepare.run(spark, cfg, layout)


def test_run_fails_above_bad_fraction_but_still_writes_the_quarantine(spark, pipeline_config, tmp_path):
    lines = ["user_id,item_id,rating,timestamp", "u1,i1,3,1700000000", "u2,i1,x,1700000000", ",i2,1,1700000000"]
    write_lines(tmp_path / "data" / "interactions" / "part-0.csv", lines)
    cfg = with_overrides(pipeline_config, {"items": {"path": None}, "prepare": {"max_bad_fraction": 0.5}})
    with pytest.raises(JobError, match=r"2 of 3 input rows \(66.67%\) failed validation"):
        run_prepare(spark, cfg)
    quarantine = spark.read.parquet(str(tmp_path / "runs" / "2026-11-29" / "quarantine" / "interactions"))
    assert sorted(r["reason"] for r in quarantine.collect()) == ["bad_weight", "missing_user"]


def test_run_refuses_empty_input(spark, pipeline_config, tmp_path):
    write_lines(tmp_path / "data" / "interactions" / "part-0.csv", ["user_id,item_id,rating,timestamp"])
    with pytest.raises(JobError, match="has no rows"):
        run_prepare(spark, with_overrides(pipeline_config, {"items": {"path": None}}))


def test_run_names_missing_columns(spark, pipeline_config, tmp_path):
    write_lines(tmp_path / "data" / "interactions" / "part-0.csv", ["who,what", "u1,i1"])
    with pytest.raises(JobError, match=r"columns .* not found; the input has \['who', 'what'\]"):
        run_prepare(spark, with_overrides(pipeline_config, {"items": {"path": None}}))


def test_run_counts_and_outputs(spark, pipeline_config, tmp_path):
    lines = [
        "user_id,item_id,rating,timestamp",
        "u1,i1,3,1700000000",
        "u1,i1,2,1700000100",
        "u2,i2,1,2024-01-01",
        "u2,,1,1",
    ]
    write_lines(tmp_path / "data" / "interactions" / "part-0.csv", lines)
    write_lines(tmp_path / "data" / "items" / "items.csv", ["item_id,title,categories", "i1,One,A|B", "i2,Two,B"])
    cfg = with_overrides(pipeline_config, {"prepare": {"max_bad_fraction": 0.5}})
    layout, report = run_prepare(spark, cfg)
    assert report["input"] == {"path": cfg.input.path, "rows_read": 4, "rows_valid": 3}
    assert report["quarantine"]["by_reason"] == {"missing_item": 1}
    assert report["output"] == {"pairs": 2, "users": 2, "items": 2}
    assert report["item_meta"]["items"] == 2
    interactions = spark.read.parquet(layout.interactions)
    assert interactions.where("user_idx = 0 AND item_idx = 0").first()["weight"] == 5.0


@pytest.mark.parametrize(
    "second_file",
    [["item_id,user_id,rating,timestamp", "i2,u2,3,1"], ["user_id,item_id,rating", "u2,i2,3"]],
    ids=["columns_swapped", "column_missing"],
)
def test_a_file_whose_header_differs_is_refused_not_misread(spark, pipeline_config, tmp_path, second_file):
    write_lines(tmp_path / "data" / "interactions" / "part-0.csv", ["user_id,item_id,rating,timestamp", "u1,i1,3,1"])
    write_lines(tmp_path / "data" / "interactions" / "part-1.csv", second_file)
    # Spark takes the names from whichever file it reads first; the other one is refused.
    with pytest.raises(JobError, match=r"part-[01].csv has header \[.*\], which does not match"):
        run_prepare(spark, with_overrides(pipeline_config, {"items": {"path": None}}))


def test_run_date_in_the_input_path_reads_that_dates_snapshot(spark, pipeline_config, tmp_path):
    write_lines(tmp_path / "logs" / "2026-11-28" / "a.csv", ["user_id,item_id,rating,timestamp", "old,i1,1,1"])
    write_lines(tmp_path / "logs" / "2026-11-29" / "a.csv", ["user_id,item_id,rating,timestamp", "new,i1,1,1"])
    cfg = with_overrides(
        pipeline_config, {"input": {"path": str(tmp_path / "logs" / "{run_date}")}, "items": {"path": None}}
    )
    layout, report = run_prepare(spark, cfg, "2026-11-28")
    assert report["input"]["rows_read"] == 1
    assert [r["user_id"] for r in spark.read.parquet(layout.users).collect()] == ["old"]


def test_ids_that_are_not_utf8_are_quarantined_not_merged(spark, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"user,item\ncaf\xe9,i1\ncaf\xe8,i1\ncaf\xc3\xa9,i2\nu1,b\xe9e\n")
    raw = read_source(spark, str(path), "csv", header=True, names=None)
    validated = prepare.validate_interactions(
        prepare.standardize_interactions(raw, {"user": "user", "item": "item"}), None
    )
    reasons = sorted((r["user_raw"], r["reason"]) for r in validated.collect())
    assert reasons == [
        ("café", None),
        ("caf\ufffd", "user_id_invalid_utf8"),
        ("caf\ufffd", "user_id_invalid_utf8"),
        ("u1", "item_id_invalid_utf8"),
    ]
