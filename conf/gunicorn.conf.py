"""gunicorn settings for the lookup API (``make serve``), taken from the ``api`` section of the
project config: bind, workers, threads, timeout_seconds, access_log, log_level. Override them
like any setting, e.g. RECS__API__BIND=0.0.0.0:8000 RECS__API__WORKERS=4. A bad config stops
gunicorn before it starts, with one line naming the key."""

import multiprocessing
import sys

from conf import ConfigError, load_config

try:
    _api = load_config().api
except ConfigError as exc:
    print(f"recs-api refused: {exc}", file=sys.stderr)
    sys.exit(2)

bind = _api.bind
# gthread: each worker serves several requests at once while they wait on Redis.
worker_class = "gthread"
workers = _api.workers or max(2, multiprocessing.cpu_count())
threads = _api.threads
timeout = _api.timeout_seconds
graceful_timeout = 10
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 200_000
max_requests_jitter = 20_000
accesslog = _api.access_log
errorlog = "-"
loglevel = _api.log_level
proc_name = "recs-api"
