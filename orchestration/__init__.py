"""Airflow pieces the DAG files use: operators for the project's jobs. Imported only by DAG
files and tests, never by the jobs or the API."""
