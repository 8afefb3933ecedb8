"""Small file operations through Hadoop's FileSystem, so run folders work on local disk,
HDFS or object stores alike (whatever URI scheme the cluster's Hadoop config knows)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def absolute_uri(path: str) -> str:
    """Turn a relative local path into an absolute one; leave URIs with a scheme alone."""
    if urlparse(str(path)).scheme:
        return str(path)
    return os.path.abspath(path)


def _filesystem(spark: SparkSession, uri: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession, uri: str) -> bool:
    """Whether a file or folder exists."""
    fs, path = _filesystem(spark, uri)
    return bool(fs.exists(path))


def delete(spark: SparkSession, uri: str) -> None:
    """Delete a file or folder recursively; a missing one is fine."""
    fs, path = _filesystem(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def list_names(spark: SparkSession, uri: str) -> list[str]:
    """The names of the entries directly inside a folder (none when it does not exist)."""
    fs, path = _filesystem(spark, uri)
    if not fs.exists(path):
        return []
    return [status.getPath().getName() for status in fs.listStatus(path)]


def read_parquet_if_complete(spark: SparkSession, uri: str):
    """A Parquet output that finished writing (its _SUCCESS marker is there), else None."""
    return spark.read.parquet(uri) if exists(spark, f"{uri}/_SUCCESS") else None


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a whole file, through a temporary name and a rename, so readers never see half of it."""
    fs, path = _filesystem(spark, uri)
    tmp = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(uri + ".tmp")
    stream = fs.create(tmp, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    if fs.exists(path):
        fs.delete(path, False)
    if not fs.rename(tmp, path):
        raise OSError(f"could not rename {uri}.tmp to {uri}")


def read_text(spark: SparkSession, uri: str) -> str | None:
    """Read a whole file as UTF-8 text, or None when it does not exist."""
    fs, path = _filesystem(spark, uri)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        data = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")


def write_json(spark: SparkSession, uri: str, document: Any) -> None:
    """Write a JSON document (sorted keys, indented) atomically."""
    write_text(spark, uri, json.dumps(document, indent=2, sort_keys=True) + "\n")


def read_json(spark: SparkSession, uri: str) -> Any | None:
    """Read a JSON document, or None when the file does not exist."""
    text = read_text(spark, uri)
    return None if text is None else json.loads(text)
