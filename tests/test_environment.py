"""The installed environment is the pinned one."""

from importlib import metadata

import pyspark


def test_pyspark_python_files_match_the_pinned_release():
    # pyspark-client installs into the same package directory; a version skew leaves one
    # release's Python files over the other's jars.
    assert pyspark.__version__ == "4.2.0"
    assert metadata.version("pyspark") == metadata.version("pyspark-client") == pyspark.__version__


def test_pandas_is_2x_for_pyspark_4():
    import pandas

    assert int(pandas.__version__.split(".")[0]) == 2


def test_spark_session_runs_on_matching_jars(spark):
    assert spark.version == pyspark.__version__
    assert spark.range(5).count() == 5
