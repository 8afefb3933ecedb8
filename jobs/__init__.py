"""Spark jobs of the nightly pipeline, one module per stage of the table in jobs/stages.py.

Each job is one module with ``main(argv)`` and runs three ways with the same arguments:

    spark-submit --py-files dist/recs_jobs.zip jobs/prepare.py --run-date 2026-11-29
    python -m jobs.prepare --run-date 2026-11-29 [--config site.yaml]
    python -m jobs.pipeline --run-date 2026-11-29          # every stage in one Spark session

Modules import pyspark inside functions or from job modules only, so that the DAG can import
the stage table without starting a JVM. The jobs build on ``store`` and ``conf``, never on
``serving``.
"""
