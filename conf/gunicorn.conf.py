"""gunicorn settings for the lookup API (``make serve``), taken from the ``api`` section of the
project config: bind, workers, threads, timeout_seconds, access_log, log_level. Override them
like any setting, e.g. RECS__API__BIND=0.0.0.0:8000 RECS__API__WORKERS=4. A bad config stops
gunicorn before it starts, with one line naming the key.

Metrics: the workers share their Prometheus counts through files in ``api.metrics_dir``
(prometheus-client's multiprocess mode), which the master empties before it starts workers;
two API instances on one host need two directories."""

import multiprocessing
import os
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
# gunicorn's control socket defaults to one path per user, so a second instance on the host
# would take it over and stopping either would delete the other's; the API does not use it.
control_socket_disable = True

# Set before the workers fork, so that every worker (and prometheus-client in it) sees it.
_metrics_dir = os.path.abspath(_api.metrics_dir)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):
    """Empty the metrics directory: counts from an earlier server must not be summed in. Only
    prometheus-client's own files are removed, so a mistyped directory loses nothing else."""
    os.makedirs(_metrics_dir, exist_ok=True)
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, name))


def child_exit(server, worker):
    """Drop a finished worker's live gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
