"""gunicorn settings for the lookup API (``make serve``). Every value can be overridden from
the environment: RECS_API_BIND, RECS_API_WORKERS, RECS_API_THREADS, RECS_API_TIMEOUT_SECONDS,
RECS_API_ACCESS_LOG ("-" for stdout)."""

import multiprocessing
import os

bind = os.environ.get("RECS_API_BIND", "127.0.0.1:8000")
# gthread: each worker serves several requests at once while they wait on Redis.
worker_class = "gthread"
workers = int(os.environ.get("RECS_API_WORKERS", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("RECS_API_THREADS", 8))
timeout = int(os.environ.get("RECS_API_TIMEOUT_SECONDS", 30))
graceful_timeout = 10
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 200_000
max_requests_jitter = 20_000
accesslog = os.environ.get("RECS_API_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("RECS_API_LOG_LEVEL", "info")
proc_name = "recs-api"
