"""The API benchmark: the project's lookups against their references, side by side in one run.

- project: the API under its production server (granian, python -m serving.server), for
  personalized lookups, unknown users (the popular list) and Redis stopped (the fallback);
- floor: a bare WSGI app doing one Redis GET (bench/reference_apps.py) under granian and under
  gunicorn gthread, the project's earlier server, with the same workers and threads;
- textbook: Flask's development server with pickled lists.

Each at 1 connection (the service time) and at 32 (throughput), driven by wrk when it is
installed (Debian: apt-get install wrk), else by bench/load.py, which is slower than wrk and
so understates the servers; the results name the driver.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conf import load_config

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "2026-11-29_20261129T020000000000Z"
WORKERS = 2


def shipped_threads() -> int:
    """The request threads per worker of conf/recs.yaml, which every server under test gets, so
    that the floors run under the project's own server settings."""
    return load_config(environ={}).api.threads


def seed(redis_url: str, users: int, per_user: int = 100) -> None:
    """A run of ``users`` lists of ``per_user`` items (the pipeline's top_n), plus the same lists
    in the references' formats."""
    import redis

    from bench.reference_apps import write_textbook_values
    from tools.seeding import seed_run

    rng = random.Random(1)
    lists = {
        f"user_{u:08d}": [(f"item_{rng.randrange(50_000):06d}", round(1 - k / 200, 6)) for k in range(per_user)]
        for u in range(users)
    }
    context = {user: ([f"item_{k:06d}" for k in range(3)], ["cat_a", "cat_b"]) for user in lists}
    client = redis.Redis.from_url(redis_url)
    seed_run(client, RUN_ID, lists, [(f"item_{k:06d}", 1000.0 - k) for k in range(100)], context=context)
    write_textbook_values(client, lists)
    client.close()


def server_commands(port: int) -> dict[str, list[str]]:
    """How each server under test starts, listening on ``port``."""
    python = sys.executable
    bin_dir = Path(python).parent
    threads = str(shipped_threads())
    return {
        "project": [python, "-m", "serving.server"],
        "floor_granian": [str(bin_dir / "granian"), "--interface", "wsgi", "--workers", str(WORKERS),
                          "--blocking-threads", threads, "--port", str(port), "--no-ws", "--factory",
                          "bench.reference_apps:create_bare_app"],
        "floor_gunicorn": [str(bin_dir / "gunicorn"), "-k", "gthread", "-w", str(WORKERS), "--threads", threads,
                           "-b", f"127.0.0.1:{port}", "bench.reference_apps:create_bare_app()"],
        "textbook": [python, "-m", "bench.reference_apps", "textbook", str(port)],
    }  # fmt: skip


class Server:
    """One server under test as a process group, stopped with SIGTERM."""

    def __init__(self, name: str, redis_url: str, log_dir: Path):
        from tools.processes import free_port, project_env

        self.name, self.port = name, free_port()
        env = project_env(
            BENCH_REDIS_URL=redis_url,
            RECS__STORE__URL=redis_url,
            RECS__API__BIND=f"127.0.0.1:{self.port}",
            RECS__API__WORKERS=str(WORKERS),
            RECS__API__THREADS=str(shipped_threads()),
            RECS__API__FALLBACK_FILE=str(log_dir / "fallback.json"),
            RECS__API__METRICS_DIR=str(log_dir / "metrics"),
        )
        self._log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(server_commands(self.port)[name], env=env, cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                return
            except urllib.error.HTTPError:
                return  # it answered (the textbook app has no /healthz)
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        """Stop the whole process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def drive(url: str, prefix: str, ids: int, connections: int, seconds: float) -> dict:
    """One load run of GET <prefix><8-digit id>?n=10 over ``ids`` random ids."""
    if shutil.which("wrk"):
        env = dict(os.environ, BENCH_PATH_PREFIX=prefix, BENCH_IDS=str(ids))
        command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                   "-s", str(ROOT / "bench" / "wrk_lookup.lua"), url]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        return {"rps": round(figures["requests"] / figures["seconds"], 1), "p50_ms": figures["p50_ms"],
                "p99_ms": figures["p99_ms"], "errors": figures["errors"], "requests": figures["requests"]}  # fmt: skip
    from bench.load import run_load

    rng = random.Random(5)
    paths = [f"{prefix}{rng.randrange(ids):08d}?n=10" for _ in range(5000)]
    result = run_load(url, paths, connections, seconds, processes=min(2, connections))
    return {"rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "errors": result.errors,
            "requests": result.requests}  # fmt: skip


# (row name, server, path prefix); the fallback rows run last, with Redis stopped.
ROWS = [
    ("floor: bare one-GET WSGI, granian", "floor_granian", "/x/user_"),
    ("floor: bare one-GET WSGI, gunicorn gthread", "floor_gunicorn", "/x/user_"),
    ("textbook: Flask dev server + pickle", "textbook", "/v1/recommendations/user_"),
    ("project: personalized", "project", "/v1/recommendations/user_"),
    ("project: unknown user, popular list", "project", "/v1/recommendations/new-user-"),
    ("project: Redis stopped, fallback", "project", "/v1/recommendations/user_"),
]


def bench_api(redis, users: int, repeats: int, seconds: float, work: Path) -> dict:
    """Every row at 1 and 32 connections, medians of ``repeats`` runs of ``seconds`` each."""
    from statistics import median

    seed(redis.url, users)
    results = {}
    for name, server_name, prefix in ROWS:
        if "Redis stopped" in name:
            redis.stop()
        server = Server(server_name, redis.url, work)
        try:
            drive(server.url, prefix, users, 4, 1.0)  # warm-up: every worker loads the run
            for connections in (1, 32):
                runs = [drive(server.url, prefix, users, connections, seconds) for _ in range(repeats)]
                row = {key: median(run[key] for run in runs) for key in ("rps", "p50_ms", "p99_ms")}
                row.update(errors=sum(run["errors"] for run in runs), runs=runs)
                results[f"{name} @{connections}"] = row
                print(f"    {name} @{connections}: {row['rps']:,.0f} req/s, p50 {row['p50_ms']} ms, "
                      f"p99 {row['p99_ms']} ms, errors {row['errors']}")  # fmt: skip
        finally:
            server.stop()
    return {
        "driver": "wrk" if shutil.which("wrk") else "bench/load.py (wrk not installed)",
        "users": users,
        "workers": WORKERS,
        "threads": shipped_threads(),
        "seconds_per_run": seconds,
        "repeats": repeats,
        "rows": results,
        "targets": api_targets(results),
    }


def api_targets(rows: dict) -> dict:
    """The issue's targets at 32 connections: >= 5x textbook, >= half the fastest floor, and p99
    no more than the floor's p99 + 5 ms."""
    project = rows["project: personalized @32"]
    floors = [rows[f"{name} @32"] for name, server, _ in ROWS if server.startswith("floor")]
    fastest = max(floors, key=lambda row: row["rps"])
    textbook = rows["textbook: Flask dev server + pickle @32"]
    return {
        "x_textbook": round(project["rps"] / textbook["rps"], 2),
        "share_of_fastest_floor": round(project["rps"] / fastest["rps"], 3),
        "p99_over_floor_ms": round(project["p99_ms"] - fastest["p99_ms"], 3),
    }


def markdown(api: dict) -> list[str]:
    """The API section of the benchmark report."""
    lines = [
        f"## API lookups, {api['users']:,} users, {api['workers']} workers x {api['threads']} threads, "
        f"driver {api['driver']}, medians of {api['repeats']} x {api['seconds_per_run']} s",
        "",
        "| what | connections | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, row in api["rows"].items():
        name, connections = key.rsplit(" @", 1)
        lines.append(f"| {name} | {connections} | {row['rps']:,.0f} | {row['p50_ms']} | {row['p99_ms']} | "
                     f"{row['errors']} |")  # fmt: skip
    targets = api["targets"]
    lines += [
        "",
        f"At 32 connections the project does {targets['x_textbook']}x the textbook app (target 5x), "
        f"{targets['share_of_fastest_floor']:.0%} of the fastest floor (target 50%), and its p99 is "
        f"{targets['p99_over_floor_ms']} ms over that floor's (target at most 5 ms).",
        "",
    ]
    return lines
