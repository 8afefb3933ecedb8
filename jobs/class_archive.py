"""When a driver JVM may map the class archive (spark.class_archive, built by tools/jvm_archive.py).

An archive belongs to the Java that built it and to one set of Spark jars. A JVM given one it
cannot use ignores it without a word, but then also starts without the JDK's own class-data
archive, a little slower than with no option at all. So the builder writes a stamp next to the
archive (``<archive>.json``: the Java that spark-submit starts and the PySpark version), and a
driver is given the archive only while the stamp still matches. Standard library only, and no
subprocess: the DAG file calls this when Airflow parses it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conf.schema import SparkSection

# A driver JVM says nothing about an archive it cannot use: a job's log keeps only its own lines.
QUIET_CLASS_ARCHIVE = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def class_archive_options(spark_cfg: SparkSection) -> list[str]:
    """The JVM options that map spark.class_archive; none when it is unset, not built, built for
    another Java or PySpark, or when the driver runs elsewhere (cluster deploy mode)."""
    archive = spark_cfg.class_archive
    if not archive or not os.path.isfile(archive):
        return []
    if spark_cfg.conf_strings().get("spark.submit.deployMode") == "cluster":
        return []
    if read_stamp(archive) != runtime_stamp():
        return []
    return [f"-XX:SharedArchiveFile={shlex.quote(os.path.abspath(archive))}", *QUIET_CLASS_ARCHIVE]


def runtime_stamp() -> dict:
    """What an archive built now would be valid for: this Java (its JVM library's size and time)
    and this PySpark, whose version names its jars."""
    java = java_executable()
    libraries = sorted(java.parents[1].glob("lib/server/libjvm.*")) if java else []
    library = libraries[0].stat() if libraries else None
    return {
        "java": str(java) if java else None,
        "libjvm": [library.st_size, library.st_mtime_ns] if library else None,
        "pyspark": metadata.version("pyspark"),
    }


def java_executable() -> Path | None:
    """The java that spark-submit starts: $JAVA_HOME/bin/java, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(found).resolve() if found and os.path.isfile(found) else None


def stamp_path(archive: str) -> str:
    """Where an archive's stamp lies: next to it."""
    return f"{archive}.json"


def read_stamp(archive: str) -> dict | None:
    """The stamp written with an archive, or None when there is none (or it is unreadable)."""
    try:
        with open(stamp_path(archive), encoding="utf-8") as stamp:
            return json.load(stamp)
    except (OSError, ValueError):
        return None


def write_stamp(archive: str) -> None:
    """Record what the archive just built is valid for (written whole, then moved into place)."""
    partial = f"{stamp_path(archive)}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as stamp:
        json.dump(runtime_stamp(), stamp)
    os.replace(partial, stamp_path(archive))
