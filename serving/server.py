"""The production server for the lookup API: granian (``python -m serving.server``).

Why granian and not gunicorn gthread: granian reads and writes HTTP in Rust on an event loop,
so a slow or idle client costs a socket and a few kilobytes, never a worker thread; Python
threads are taken only by requests whose headers have fully arrived. Under gunicorn gthread
each open connection held a thread, and a few dozen slow clients stopped the API. The
benchmark (`make bench`) measures both servers side by side; the figures are in the README.

Settings come from the ``api`` section of the project config (bind, workers, threads,
header_timeout_seconds, timeout_seconds, access_log, log_level), overridable as RECS__API__*.
A bad config stops the server before it starts, with one line naming the key.

Metrics: the workers share their Prometheus counts through files in ``api.metrics_dir``
(prometheus-client's multiprocess mode), which this launcher empties before starting workers;
two API instances on one host need two directories.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

from conf import ConfigError, load_config


def split_bind(bind: str) -> tuple[str, int]:
    """("host", port) of a HOST:PORT bind address; ValueError when it is not one."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"api.bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def empty_metrics_dir(path: str) -> str:
    """Create the metrics directory and remove prometheus-client's files from an earlier server
    (only its own *.db files, so that a mistyped directory loses nothing else)."""
    metrics_dir = os.path.abspath(path)
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))
    return metrics_dir


def build_server(api, pid_file: str | None = None):
    """A granian server for ``serving:create_app`` with the ``api`` section's settings."""
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    host, port = split_bind(api.bind)
    return Server(
        "serving:create_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=api.workers or max(2, multiprocessing.cpu_count()),
        blocking_threads=api.threads,
        # granian admits this many connections per worker (idle keep-alive ones included); the
        # rest wait in the listen backlog. Their cost is a socket each, not a thread.
        backlog=2 * api.max_connections,
        backpressure=api.max_connections,
        # A client gets this long to send a request's headers; slow ones are cut off, and while
        # they trickle in they hold no thread.
        http1_settings=HTTP1Settings(header_read_timeout=int(api.header_timeout_seconds * 1000)),
        websockets=False,
        log_enabled=True,
        log_level=api.log_level,
        log_access=api.access_log is not None,
        respawn_failed_workers=True,
        workers_kill_timeout=api.timeout_seconds,
        pid_file=Path(pid_file) if pid_file else None,
    )


def main(argv: list[str] | None = None) -> int:
    """Start the API under granian in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m serving.server", description=__doc__.splitlines()[0])
    parser.add_argument("--pid-file", help="write the server's process id here")
    args = parser.parse_args(argv)
    try:
        api = load_config().api
        split_bind(api.bind)
    except (ConfigError, ValueError) as exc:
        print(f"recs-api refused: {exc}", file=sys.stderr)
        return 2
    # Set before the workers start, so that every worker (and prometheus-client in it) sees it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = empty_metrics_dir(api.metrics_dir)
    build_server(api, args.pid_file).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
