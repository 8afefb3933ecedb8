"""Reading input files (CSV, TSV or Parquet) as text columns, so that parsing, and rejecting
what does not parse, happens in the job's own transforms rather than silently in a reader.

An input that cannot be read at all (a missing path, a truncated or corrupt Parquet file, a CSV
file whose header differs from the others) is refused with one line naming the file and the
problem, rather than a page of Java stack trace: see ``reading_input``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from conf.quoting import clip
from conf.schema import INPUT_FORMATS
from jobs.runner import JobError
from jobs.storage import absolute_uri

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

CORRUPT_RECORD = "_corrupt_record"
SOURCE_FILE = "source_file"
# Spark's CSV parser (univocity) fails the whole read, even in PERMISSIVE mode, on a line with
# more fields than this; such lines are set aside before it sees them (see _read_delimited).
MAX_CSV_FIELDS = 20480
# Spark's loggers that print a whole Java stack trace for each failed task: while the input is
# read, the failure is reported once, as a refusal naming the file (reading_input).
TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.storage.BlockManager",
)


def read_source(
    spark: SparkSession,
    path: str,
    fmt: str,
    delimiter: str = ",",
    header: bool = True,
    names: list[str] | None = None,
) -> DataFrame:
    """Read one source (csv, tsv or parquet); every column comes back as a string, plus the
    malformed raw line (``_corrupt_record``, CSV only) and the file each row came from.
    ``names`` names the columns of a delimited file without a header."""
    from pyspark.sql import functions as F

    if fmt not in INPUT_FORMATS:
        raise ValueError(f"input format must be one of {', '.join(INPUT_FORMATS)}, got {fmt!r}")
    path = absolute_uri(path)
    # Checked first: Spark's own check logs a Java stack trace before it raises.
    if not input_exists(spark, path):
        raise JobError(f"input not found: {clip(path)}")
    with reading_input(spark, path):
        if fmt == "parquet":
            frame = spark.read.parquet(path)
            text_columns = [F.col(name).cast("string").alias(name) for name in frame.columns]
            corrupt = F.lit(None).cast("string").alias(CORRUPT_RECORD)
            return frame.select(*text_columns, corrupt, F.col("_metadata.file_path").alias(SOURCE_FILE))
        return _read_delimited(spark, path, "\t" if fmt == "tsv" else delimiter, header, names)


def input_exists(spark: SparkSession, path: str) -> bool:
    """Whether a file, folder or glob pattern names anything, through Hadoop's FileSystem."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    matches = fs.globStatus(hadoop_path)
    return matches is not None and len(matches) > 0


def _read_delimited(spark: SparkSession, path: str, sep: str, header: bool, names: list[str] | None) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    options = {"sep": sep, "header": header}
    readable, overlong = _split_off_overlong_files(spark, path, sep)
    if not names or header:
        # The header's names, or _c0, _c1, ...
        names = spark.read.csv(readable or overlong, **options).columns
    schema = StructType(
        [StructField(name, StringType()) for name in names] + [StructField(CORRUPT_RECORD, StringType())]
    )
    frames = []
    if readable:
        # With a header, each file's header must match the schema: a file whose columns come in
        # another order then fails, instead of having its users and items swapped silently.
        frame = spark.read.csv(
            readable,
            schema=schema,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT_RECORD,
            enforceSchema=not header,
            **options,
        )
        frames.append(frame.select("*", F.col("_metadata.file_path").alias(SOURCE_FILE)))
    if overlong:
        frames.append(_read_lines_as_csv(spark, overlong, sep, header, schema))
    combined = frames[0]
    for frame in frames[1:]:
        combined = combined.unionByName(frame)
    return combined


def _field_count_at_least(line: Column, sep: str, fields: int) -> Column:
    """Whether a line holds at least ``fields`` fields, counting separators (quotes ignored, so
    it may count more fields than there are, never fewer)."""
    from pyspark.sql import functions as F

    long_enough = F.length(line) >= (fields - 1) * len(sep)
    separators = (F.length(line) - F.length(F.replace(line, F.lit(sep), F.lit("")))) / F.lit(len(sep))
    return long_enough & (separators >= fields - 1)


def _split_off_overlong_files(spark: SparkSession, path: str, sep: str) -> tuple[list[str], list[str]]:
    """The paths Spark's CSV reader can take as they are (just ``path``, normally), and the files
    with a line too many fields long for it, which must be read line by line."""
    overlong_keys = _files_with_overlong_lines(spark, path, sep)
    if not overlong_keys:
        return [path], []
    files = spark.read.text(path).inputFiles()
    overlong = [file for file in files if _file_key(file) in overlong_keys]
    return [file for file in files if file not in overlong], overlong


def _files_with_overlong_lines(spark: SparkSession, path: str, sep: str) -> set[tuple[str, str, str]]:
    """The files under ``path`` (as _file_key gives them) with a line too many fields long for
    Spark's CSV parser."""
    from pyspark.sql import functions as F

    lines = spark.read.text(path).select("value", F.col("_metadata.file_path").alias("file"))
    overlong = lines.where(_field_count_at_least(F.col("value"), sep, MAX_CSV_FIELDS + 1))
    return {_file_key(row["file"]) for row in overlong.select("file").distinct().collect()}


def _file_key(uri: str) -> tuple[str, str, str]:
    """A file's URI in one form: Spark writes file:/x in one place, file:///x (percent-encoded) in another."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    return parts.scheme, parts.netloc, unquote(parts.path)


def _read_lines_as_csv(spark: SparkSession, files: list[str], sep: str, header: bool, schema) -> DataFrame:
    """Files holding over-long lines, parsed line by line: those lines become malformed rows (the
    whole line in ``_corrupt_record``), the others are parsed as the CSV reader would. Header
    lines (every field equal to its column's name) are dropped; these files' headers are not
    checked against the others'."""
    from pyspark.sql import functions as F

    names = [field.name for field in schema.fields if field.name != CORRUPT_RECORD]
    lines = spark.read.text(files).select("value", F.col("_metadata.file_path").alias(SOURCE_FILE))
    lines = lines.where(F.trim("value") != "")
    options = {"sep": sep, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD}
    too_many = F.struct(
        *[F.lit(None).cast("string").alias(name) for name in names], F.col("value").alias(CORRUPT_RECORD)
    )
    # Backquoted, so that column names with spaces or colons survive the DDL text.
    ddl = ", ".join(f"`{field.name.replace('`', '``')}` STRING" for field in schema.fields)
    parsed = F.when(_field_count_at_least(F.col("value"), sep, MAX_CSV_FIELDS + 1), too_many).otherwise(
        F.from_csv("value", ddl, options)
    )
    rows = lines.select(parsed.alias("row"), SOURCE_FILE).select("row.*", SOURCE_FILE)
    if header:
        is_header = F.lit(True)
        for name in names:
            is_header = is_header & (F.col(name) == F.lit(name))
        rows = rows.where(~is_header | F.col(CORRUPT_RECORD).isNotNull())
    return rows


@contextmanager
def reading_input(spark: SparkSession, path: str | None = None) -> Iterator[None]:
    """Around Spark actions that read the input: a file that cannot be read is refused with one
    line (JobError) naming it and the problem, and Spark does not also log a stack trace for
    each failed task meanwhile. Other failures go on as they are, their trace intact."""
    try:
        with _task_failures_unlogged(spark):
            yield
    except JobError:
        raise
    except Exception as exc:  # noqa: BLE001 - Spark wraps a reader's error in generic types
        refusal = header_mismatch(exc) or unreadable_input(exc, path)
        if refusal is None:
            raise
        raise refusal from None


@contextmanager
def _task_failures_unlogged(spark: SparkSession) -> Iterator[None]:
    """Turn off Spark's per-task failure logging (TASK_FAILURE_LOGGERS) for the block, then put
    it back as it was."""
    saved = _turn_off_loggers(spark, TASK_FAILURE_LOGGERS)
    try:
        yield
    finally:
        if saved is not None:
            _restore_loggers(spark, saved)


def _turn_off_loggers(spark: SparkSession, names: tuple[str, ...]) -> dict | None:
    """Set log4j loggers to OFF; return their own levels before (None: had none), or None when
    log4j 2 cannot be reached this way, and then leave logging alone."""
    try:
        log4j = spark.sparkContext._jvm.org.apache.logging.log4j
        loggers = log4j.LogManager.getContext(False).getConfiguration().getLoggers()
        saved = {name: loggers.get(name).getLevel() if loggers.containsKey(name) else None for name in names}
        for name in names:
            log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)
    except Exception:  # noqa: BLE001 - another logging backend: then Spark's logs stay as they are
        return None
    return saved


def _restore_loggers(spark: SparkSession, saved: dict) -> None:
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    for name, level in saved.items():
        if level is None:
            context.getConfiguration().removeLogger(name)
        else:
            log4j.core.config.Configurator.setLevel(name, level)
    context.updateLoggers()


def header_mismatch(exc: Exception) -> JobError | None:
    """A clear refusal for Spark's error about a CSV file whose header differs from the others."""
    text = str(exc)
    messages = ("CSV header does not conform to the schema", "Number of column in CSV header is not equal")
    if not any(message in text for message in messages):
        return None
    where = re.search(r"reading file (\S+?)\.?\s", text)
    header = re.search(r"Header: ([^\n]*)", text) or re.search(r"Header length: (\d+)", text)
    return JobError(
        f"input file {clip(where.group(1)) if where else '?'} has header [{clip(header.group(1)) if header else '?'}], "
        "which does not match the other files' header; fix or remove that file"
    )


_FAILED_FILE = re.compile(r"\[FAILED_READ_FILE[.\w]*\][^\n]*? reading file (\S+?)\.?\s")
_CAUSE = re.compile(r"^Caused by: [\w.$]+: (.*)$", re.MULTILINE)
_MALFORMED_CSV = re.compile(r"\[MALFORMED_CSV_RECORD\] Malformed CSV record: ?(.*)")


def unreadable_input(exc: Exception, path: str | None = None) -> JobError | None:
    """A clear refusal for Spark's error about an input file it could not read (truncated or
    corrupt Parquet, a CSV line its parser gives up on), or about an input without data."""
    text = str(exc)
    failed = _FAILED_FILE.search(text)
    if failed:
        file = failed.group(1)
        return JobError(f"input file {clip(file)} {_read_problem(text, file)}; fix or remove that file")
    if "UNABLE_TO_INFER_SCHEMA" in text:
        return JobError(f"input {clip(path or '?')} has no data files Spark can read (no schema could be inferred)")
    if "PATH_NOT_FOUND" in text:
        return JobError(f"input not found: {clip(path or '?')}")
    return None


def _read_problem(text: str, file: str) -> str:
    """What went wrong reading one file, from the causes in Spark's error, quoted within bounds."""
    malformed = _MALFORMED_CSV.search(text)
    if malformed:
        return f"has a line Spark's CSV parser cannot split (over {MAX_CSV_FIELDS} fields?): {clip(malformed.group(1))}"
    causes = [cause.strip() for cause in _CAUSE.findall(text)]
    cause = causes[-1] if causes else "unknown error"
    if "FOOTER" in text.split("\n", 1)[0] or "Parquet" in " ".join(causes) or file.endswith(".parquet"):
        return f"is not a readable Parquet file: {clip(cause)}"
    return f"could not be read: {clip(cause)}"


def require_columns(frame: DataFrame, wanted: dict, what: str) -> None:
    """Fail with the available column names when a configured column is not in the input."""
    missing = {role: name for role, name in wanted.items() if name and name not in frame.columns}
    if missing:
        available = [c for c in frame.columns if c not in (CORRUPT_RECORD, SOURCE_FILE)]
        raise JobError(f"{what}: configured columns {clip(missing)} not found; the input has {clip(available)}")
