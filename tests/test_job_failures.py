"""Jobs fed bad input, run as users run them (``python -m jobs.<stage>``): one line on stderr
naming the file and the problem, never a Java or Python stack trace, exit status 2 and a failure
record; a 10 MB input line is quarantined and counted, and nothing on stderr quotes it whole;
and the manifest a real finalize writes holds none of the config's secrets."""

import json
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tools.processes import ROOT, project_env

RUN_DATE = "2026-11-29"
# One small local Spark per job: these tests are about what the job says, not about speed.
SMALL_SPARK = {
    "RECS__SPARK__MASTER": "local[2]",
    "RECS__SPARK__CONF__spark.sql.shuffle.partitions": "2",
    "RECS__SPARK__CONF__spark.driver.memory": "1g",
}
HEADER = "user_id,item_id,rating,timestamp"
# A Java frame, a Python traceback, a chained cause, or the "... 9 more" of a folded trace.
TRACE_LINE = re.compile(r"^\s+at [\w.$<>]+\(|^Traceback |^Caused by:|^\s+\.\.\. \d+ more|Exception in task")


def run_job(module: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    variables = {"RECS__PATHS__RUNS_ROOT": str(tmp_path / "runs"), **SMALL_SPARK, **env}
    command = [sys.executable, "-m", module, "--run-date", RUN_DATE]
    return subprocess.run(command, env=project_env(**variables), cwd=ROOT, capture_output=True, text=True, timeout=400)


def prepare_env(input_path, fmt: str = "csv", **extra: str) -> dict[str, str]:
    """prepare on one input, no item metadata and no events (so no Redis and no other reads)."""
    return {"RECS__INPUT__PATH": str(input_path), "RECS__INPUT__FORMAT": fmt, "RECS__ITEMS__PATH": "null",
            "RECS__EVENTS__ENABLED": "false", **extra}  # fmt: skip


def the_refusal(result: subprocess.CompletedProcess, stage: str) -> str:
    """The job's one refusal line, after checking there is no stack trace anywhere."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, result.stderr[-3000:]
    assert not [line for line in output.splitlines() if TRACE_LINE.search(line)], result.stderr[-3000:]
    refusals = [line for line in result.stderr.splitlines() if f"{stage} refused:" in line]
    assert len(refusals) == 1, result.stderr[-3000:]
    return refusals[0]


def failure_record(tmp_path, stage: str) -> dict:
    return json.loads((tmp_path / "runs" / RUN_DATE / "stages" / f"{stage}.failed.json").read_text())


def good_parquet(path, rows: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"user_id": [f"u{i}" for i in range(rows)], "item_id": [f"i{i % 7}" for i in range(rows)],
                      "rating": [1.0] * rows, "timestamp": [1_700_000_000] * rows})  # fmt: skip
    pq.write_table(table, path)


def truncated(path) -> None:
    """A Parquet file cut in half, as an interrupted copy leaves it."""
    good_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_footer(path) -> None:
    """A Parquet file whose magic numbers are in place but whose footer is garbage."""
    good_parquet(path)
    data = bytearray(path.read_bytes())
    footer_length = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer_length : -8] = bytes(range(256)) * (footer_length // 256) + bytes(footer_length % 256)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "alongside_a_good_file"),
    [(truncated, False), (corrupt_footer, True)],
    ids=["truncated_file_alone", "corrupt_footer_next_to_a_good_file"],
)
def test_an_unreadable_parquet_input_is_refused_in_one_line_naming_the_file(tmp_path, damage, alongside_a_good_file):
    folder = tmp_path / "data" / "interactions"
    bad = folder / "part-1.parquet"
    damage(bad)
    if alongside_a_good_file:
        good_parquet(folder / "part-0.parquet")
    result = run_job("jobs.prepare", tmp_path, **prepare_env(folder if alongside_a_good_file else bad, "parquet"))
    line = the_refusal(result, "prepare")
    assert re.search(r"prepare refused: input file \S*part-1\.parquet is not a readable Parquet file: .+", line), line
    assert len(line) < 1000, line
    record = failure_record(tmp_path, "prepare")
    assert (record["refused"], record["error"]) == (True, "JobError")
    assert "part-1.parquet is not a readable Parquet file" in record["message"]


def test_a_missing_input_path_is_one_line_without_a_java_trace(tmp_path):
    absent = tmp_path / "data" / "absent"
    result = run_job("jobs.prepare", tmp_path, **prepare_env(absent))
    line = the_refusal(result, "prepare")
    assert line.endswith(f"prepare refused: input not found: {absent}")
    assert "FileNotFoundException" not in result.stderr, "Spark's own check logs a trace; it must not run"
    assert failure_record(tmp_path, "prepare")["message"] == f"input not found: {absent}"


TEN_MB = 10_000_000


def test_a_ten_megabyte_line_is_quarantined_and_counted_and_never_quoted_whole(tmp_path):
    folder = tmp_path / "data" / "interactions"
    folder.mkdir(parents=True)
    good = [f"u{i},i{i % 20},1,1700000000" for i in range(200)]
    # Five million fields: Spark's CSV parser gives up on the whole file for this one line.
    too_many_fields = ",".join(["a"] * (TEN_MB // 2))
    (folder / "part-0.csv").write_text("\n".join([HEADER, *good[:100], too_many_fields, *good[100:150]]) + "\n")
    (folder / "part-1.csv").write_text("\n".join([HEADER, *good[150:], "x" * 300 + ",i1,1,1"]) + "\n")
    result = run_job("jobs.prepare", tmp_path, **prepare_env(folder, RECS__PREPARE__MAX_BAD_FRACTION="0.05"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stderr) < 4000, "no line of stderr quotes the input"
    assert max(len(line) for line in result.stderr.splitlines()) < 500
    report = json.loads((tmp_path / "runs" / RUN_DATE / "stages" / "prepare.json").read_text())
    assert report["input"]["rows_read"] == 202 and report["input"]["rows_valid"] == 200
    assert report["quarantine"]["by_reason"] == {"malformed_row": 1, "user_id_too_long": 1}
    quarantine = pq.read_table(tmp_path / "runs" / RUN_DATE / "quarantine" / "interactions").to_pylist()
    by_reason = {row["reason"]: row for row in quarantine}
    assert by_reason["malformed_row"]["raw_record"] == too_many_fields, "kept whole in the quarantine"
    assert by_reason["malformed_row"]["source_file"].endswith("part-0.csv")
    assert by_reason["user_id_too_long"]["source_file"].endswith("part-1.csv")


SECRETS = ("S3-SECRET-1", "S3-ACCESS-2", "SSL-PASS-3", "P@SS/W#RD:4", "QUERY-PASS-5", "TRUST-PASS-6")
SECRET_CONFIG = """
spark:
  conf:
    spark.hadoop.fs.s3a.secret.key: S3-SECRET-1
    spark.hadoop.fs.s3a.access.key: S3-ACCESS-2
    spark.ssl.keyPassword: SSL-PASS-3
    spark.executor.extraJavaOptions: -Djavax.net.ssl.trustStorePassword=TRUST-PASS-6
store:
  url: "rediss://recs:P@SS/W#RD:4@cache.internal:6380/0?password=QUERY-PASS-5&ssl_ca_certs=/etc/ca.pem"
gate:
  enabled: false
"""


def finished_stage_reports(run_dir) -> None:
    """What the build stages leave behind, small: their reports and the outputs' _SUCCESS markers."""
    reports = {
        "export_events": {},
        "prepare": {"input": {"rows_read": 3}, "quarantine": {"rows": 0}, "output": {"pairs": 3}},
        "tune": {"chosen": {"rank": 8}},
        "train": {},
        "evaluate": {"k": 10},
        "recommend": {"output": {"rows": 3}, "variants": ["als"], "experiment": None},
        "similar": {},
    }
    (run_dir / "stages").mkdir(parents=True)
    for stage, report in reports.items():
        (run_dir / "stages" / f"{stage}.json").write_text(json.dumps({**report, "stage": stage, "seconds": 1.0}))
    for output in ("recommendations", "popular"):
        (run_dir / output).mkdir()
        (run_dir / output / "_SUCCESS").write_text("")


def test_a_manifest_written_by_a_real_finalize_holds_none_of_the_secrets(tmp_path):
    finished_stage_reports(tmp_path / "runs" / RUN_DATE)
    (tmp_path / "secret.yaml").write_text(SECRET_CONFIG)
    result = run_job("jobs.finalize", tmp_path, RECS_CONFIG=str(tmp_path / "secret.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "runs" / RUN_DATE / "manifest.json").read_text()
    for secret in (*SECRETS, "W#RD", "P@SS"):
        assert secret not in text, f"{secret} leaked into the manifest"
        assert secret not in result.stderr, f"{secret} leaked into the log"
    config = json.loads(text)["config"]
    assert config["store"]["url"] == "rediss://recs:***@cache.internal:6380/0?password=***&ssl_ca_certs=/etc/ca.pem"
    assert config["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert config["spark"]["conf"]["spark.sql.session.timeZone"] == "UTC", "ordinary settings are kept"


def test_a_failed_session_is_quiet_while_it_stops_and_logging_comes_back_for_the_next(tmp_path):
    script = """
import sys
from conf import load_config
from jobs.session import spark_session

cfg = load_config(environ={}).spark.model_copy(update={"master": "local[1]", "checkpoint_dir": sys.argv[1]})
root = None
try:
    with spark_session(cfg, "failing") as spark:
        root = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getRootLogger()
        before = root.getLevel().toString()
        raise ValueError("the work failed")
except ValueError:
    pass
print("after stop:", root.getLevel().toString(), "before:", before)
"""
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "checkpoints")], env=project_env(),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("after stop:"))
    after, before = line.removeprefix("after stop: ").split(" before: ")
    assert before != "OFF" and after == before, line
