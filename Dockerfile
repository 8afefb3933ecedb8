# One image, three entry points (docker/entrypoint.sh): the API under granian, Airflow running
# the nightly DAG with Spark local[*], and the sample-data generator. Built from package
# registries only: Debian's (Java) and PyPI's (requirements.lock).
FROM python:3.11-slim-bookworm

# Spark needs a Java runtime and ps; native BLAS makes ALS about 1.6x faster per iteration.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps libopenblas0-pthread liblapack3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock

COPY conf conf
COPY jobs jobs
COPY store store
COPY serving serving
COPY dags dags
COPY orchestration orchestration
COPY tools tools
COPY docker docker
# The jobs run as an unprivileged user; var/ (runs, Airflow, the API's files) and dist/ (the
# bundle, rebuilt at start from the mounted conf/) are its only writable places.
RUN useradd --create-home --uid 1000 recs \
    && mkdir -p var dist && chown recs:recs var dist
USER recs
RUN python -m tools.bundle dist/recs_jobs.zip

ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/app/var/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
    AIRFLOW_CONN_SPARK_RECS='{"conn_type": "spark", "host": "local[*]"}' \
    RECS__API__BIND=0.0.0.0:8000

EXPOSE 8000 8080
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["api"]
