"""Reading input files (CSV, TSV or Parquet) as text columns, so that parsing, and rejecting
what does not parse, happens in the job's own transforms rather than silently in a reader."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from conf.schema import INPUT_FORMATS
from jobs.runner import JobError
from jobs.storage import absolute_uri

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CORRUPT_RECORD = "_corrupt_record"
SOURCE_FILE = "source_file"


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
    try:
        if fmt == "parquet":
            frame = spark.read.parquet(path)
            text_columns = [F.col(name).cast("string").alias(name) for name in frame.columns]
            corrupt = F.lit(None).cast("string").alias(CORRUPT_RECORD)
            return frame.select(*text_columns, corrupt, F.col("_metadata.file_path").alias(SOURCE_FILE))
        return _read_delimited(spark, path, "\t" if fmt == "tsv" else delimiter, header, names)
    except Exception as exc:  # noqa: BLE001 - Spark raises many types for a missing or unreadable path
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            raise JobError(f"input not found: {path}") from exc
        raise


def _read_delimited(spark: SparkSession, path: str, sep: str, header: bool, names: list[str] | None) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    options = {"sep": sep, "header": header}
    if not names or header:
        names = spark.read.csv(path, **options).columns  # the header's names, or _c0, _c1, ...
    schema = StructType(
        [StructField(name, StringType()) for name in names] + [StructField(CORRUPT_RECORD, StringType())]
    )
    # With a header, each file's header must match the schema: a file whose columns come in
    # another order then fails, instead of having its users and items swapped silently.
    frame = spark.read.csv(
        path,
        schema=schema,
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=CORRUPT_RECORD,
        enforceSchema=not header,
        **options,
    )
    return frame.select("*", F.col("_metadata.file_path").alias(SOURCE_FILE))


@contextmanager
def refusing_header_mismatch() -> Iterator[None]:
    """Turn Spark's error about a CSV file whose header differs from the others into a refusal."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - Spark wraps the reader's error in a generic one
        refusal = header_mismatch(exc)
        if refusal is None:
            raise
        raise refusal from exc


def header_mismatch(exc: Exception) -> JobError | None:
    """A clear refusal for Spark's error about a CSV file whose header differs from the others."""
    import re

    text = str(exc)
    messages = ("CSV header does not conform to the schema", "Number of column in CSV header is not equal")
    if not any(message in text for message in messages):
        return None
    where = re.search(r"reading file (\S+?)\.?\s", text)
    header = re.search(r"Header: ([^\n]*)", text) or re.search(r"Header length: (\d+)", text)
    return JobError(
        f"input file {where.group(1) if where else '?'} has header [{header.group(1) if header else '?'}], "
        "which does not match the other files' header; fix or remove that file"
    )


def require_columns(frame: DataFrame, wanted: dict, what: str) -> None:
    """Fail with the available column names when a configured column is not in the input."""
    missing = {role: name for role, name in wanted.items() if name and name not in frame.columns}
    if missing:
        available = [c for c in frame.columns if c not in (CORRUPT_RECORD, SOURCE_FILE)]
        raise JobError(f"{what}: configured columns {missing} not found; the input has {available}")
