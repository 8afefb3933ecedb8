"""Spark jobs of the nightly pipeline.

Each job is one module with ``main(argv)`` and runs three ways with the same arguments:

    spark-submit --py-files dist/recs_jobs.zip jobs/prepare.py --config conf/pipeline.yaml --run-date 2026-11-29
    python -m jobs.prepare --config conf/pipeline.yaml --run-date 2026-11-29
    python -m jobs.pipeline --run-date 2026-11-29          # every stage in one Spark session

Modules import pyspark inside functions or from job modules only, so that the DAG and the
API can import shared pieces without starting a JVM.
"""
