"""Soak: steady load on the API under its production server (granian) and a private
redis-server for ten minutes, with a publish of a new run and a prune of the old one inside.

    python -m tools.soak --minutes 10        # make soak
    python -m tools.soak --minutes 1         # a quick try

The time is cut into windows of about 30 seconds (at least four), each a bounded closed-loop
load (bench/load.py) of 8 connections over personalized, popular, unknown-user and similar
lookups. Run B is published during the window a third of the way in, and run A pruned during
the window two thirds of the way in, each through store.writer on a connection of its own that
is closed before the window ends. After each window the tool records the requests, errors, p50
and p99, the resident memory of the API's worker processes and Redis's connected_clients.

PASS needs all of: no errors; a stable p99 (each window's p99 at most 2x the first window's;
3x in the publish window, which shares the two cores with Redis loading a whole run); worker
memory growth from the second window to the last under 10%, with the same worker processes
throughout; and a flat Redis connection count (end-of-window connected_clients within 2 of
each other, so the publish's and the prune's connections are gone). Before the first window a
short warm-up with every worker thread busy fills the API's Redis pools, so that their normal
growth is not taken for a leak. It prints a table and the verdict, writes them as JSON to
<out-dir>/soak-<UTC time>.json (the API's and Redis's logs in the folder of the same name), and
exits 0 on PASS, 1 on FAIL, 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import redis

from bench.load import run_load
from conf import load_config
from store.connection import connect, writer_settings
from store.contract import KeyLayout
from store.writer import LoadedRun, PublishPolicy, prune, publish_run, similar_list_writes, user_list_writes
from tools.processes import ApiServer, RedisProcess

RUN_A, RUN_B = "2026-11-28_20261128T020000000Z", "2026-11-29_20261129T020000000Z"
USERS, ITEMS, LIST_LENGTH = 10_000, 2_000, 20
CATEGORIES = ("Drama", "Comedy", "Sci-Fi")
SIMILAR_ITEMS = 500
TARGET_WINDOW_SECONDS, MIN_WINDOWS = 30.0, 4
CONNECTIONS, LOAD_PROCESSES = 8, 2
WARMUP_SECONDS = 5.0
P99_LIMIT, PUBLISH_P99_LIMIT, RSS_GROWTH_LIMIT, CLIENTS_SPREAD_LIMIT = 2.0, 3.0, 0.10, 2


@dataclass
class Window:
    """What one load window measured, and what happened to the store during it."""

    index: int
    started_s: float
    seconds: float
    event: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    worker_rss_mb: float
    worker_pids: list[int]
    redis_clients: int
    redis_clients_by_name: dict[str, int]
    store_action: dict | None


def load_paths() -> list[str]:
    """The lookups the load cycles through: every one answers 200 with run A and with run B."""
    personalized = [f"/v1/recommendations/user_{u:05d}?n=10" for u in range(0, USERS, USERS // 50)]
    unknown = [f"/v1/recommendations/stranger_{k}?n=10" for k in range(20)]
    popular = ["/v1/popular?n=10", *(f"/v1/popular?n=5&category={c}" for c in CATEGORIES)]
    similar = [f"/v1/similar/item_{k:05d}?n=10" for k in range(0, SIMILAR_ITEMS, SIMILAR_ITEMS // 20)]
    return personalized + unknown + popular + similar


def run_lists(tag: str) -> tuple[list, list, dict]:
    """A run's user lists, item-to-item lists and popular lists; ``tag`` marks its scores apart."""
    shift = 0 if tag == "A" else 7

    def items_from(start: int) -> list[tuple[str, float]]:
        return [(f"item_{(start + k) % ITEMS:05d}", round(1.0 - k / 50, 4)) for k in range(LIST_LENGTH)]

    users = [("default", f"user_{u:05d}", items_from(u * 13 + shift)) for u in range(USERS)]
    similar = [(f"item_{i:05d}", "als", items_from(i + 1 + shift)) for i in range(SIMILAR_ITEMS)]
    popular = {None: items_from(shift)}
    popular.update({category: items_from(100 * (k + 1) + shift) for k, category in enumerate(CATEGORIES)})
    return users, similar, popular


def publish(client, run_id: str, tag: str) -> dict:
    """Publish one run through store.writer.publish_run, loading its lists in batches."""
    cfg = load_config(environ={})
    keys, policy = KeyLayout(cfg.store.key_prefix), PublishPolicy.from_config(cfg.publish)
    users, similar, popular = run_lists(tag)
    item_categories = {f"item_{i:05d}": [CATEGORIES[i % len(CATEGORIES)]] for i in range(ITEMS)}

    def load(loading_run_id: str) -> LoadedRun:
        writes = [*user_list_writes(users, keys, loading_run_id), *similar_list_writes(similar, keys, loading_run_id)]
        for start in range(0, len(writes), policy.batch_size):
            pipe = client.pipeline(transaction=False)
            for key, value in writes[start : start + policy.batch_size]:
                pipe.set(key, value)
            pipe.execute()
        return LoadedRun(len(users), len(writes), popular, None, len(similar), item_categories, {})

    manifest = {"run_id": run_id, "run_date": run_id[:10], "code_version": "soak", "metrics": {},
                "variants": ["default"], "experiment": None}  # fmt: skip
    report = publish_run(client, keys, policy, manifest, load)
    return {"action": f"publish {run_id}", "status": report["status"], "user_lists": report.get("user_lists")}


def prune_older_runs(client) -> dict:
    """Delete every run but the current one (store.writer.prune with keep=1)."""
    cfg = load_config(environ={})
    removed = prune(client, KeyLayout(cfg.store.key_prefix), keep=1, batch_size=cfg.publish.batch_size)
    return {"action": "prune", "removed_runs": removed}


def with_own_connection(redis_url: str, action: Callable) -> Callable[[], dict]:
    """``action`` on a writer connection of its own, closed afterwards, as the publish job does."""

    def run() -> dict:
        cfg = load_config(environ={}, overrides={"store": {"url": redis_url}})
        client = connect(writer_settings(cfg.store, client_name="recs-soak"))
        try:
            started = time.monotonic()
            return {**action(client), "seconds": round(time.monotonic() - started, 2)}
        finally:
            client.close()

    return run


class Background(threading.Thread):
    """A store action run next to the load; its result or its error is kept for the report."""

    def __init__(self, action: Callable[[], dict], delay: float):
        super().__init__(daemon=True)
        self.action, self.delay = action, delay
        self.result: dict | None = None

    def run(self) -> None:
        time.sleep(self.delay)
        try:
            self.result = self.action()
        except Exception as exc:  # noqa: BLE001 - a failed action is reported, and fails the soak
            self.result = {"error": f"{type(exc).__name__}: {exc}"}


def worker_processes(server_pid: int) -> list:
    """The API server's worker processes (granian's children)."""
    return sorted(psutil.Process(server_pid).children(recursive=True), key=lambda process: process.pid)


def worker_rss_mb(workers: list) -> float:
    """The workers' resident memory together, in MiB."""
    return round(sum(process.memory_info().rss for process in workers) / 2**20, 1)


def redis_clients(client) -> tuple[int, dict[str, int]]:
    """Redis's connected_clients (this monitoring connection included), and how many of them
    each client name holds (recs-api: the API's readers)."""
    count = int(client.info("clients")["connected_clients"])
    names = collections.Counter(entry.get("name") or "(unnamed)" for entry in client.client_list())
    return count, dict(sorted(names.items()))


def window_plan(minutes: float) -> tuple[int, float]:
    """How many windows, and how long each, for a soak of ``minutes``."""
    total = minutes * 60
    count = max(MIN_WINDOWS, round(total / TARGET_WINDOW_SECONDS))
    return count, total / count


def run_windows(base_url: str, server_pid: int, redis_url: str, minutes: float) -> list[Window]:
    """The load windows, with the publish of run B and the prune of run A inside."""
    count, seconds = window_plan(minutes)
    actions = {count // 3: ("publish B", publish_b(redis_url)), (2 * count) // 3: ("prune A", prune_a(redis_url))}
    monitor = redis.Redis.from_url(redis_url)
    paths, windows, started = load_paths(), [], time.monotonic()
    try:
        for index in range(count):
            event, action = actions.get(index, ("", None))
            background = Background(action, delay=seconds / 3) if action else None
            offset = time.monotonic() - started
            if background:
                background.start()
            result = run_load(base_url, paths, CONNECTIONS, seconds, LOAD_PROCESSES)
            if background:
                background.join()
            workers = worker_processes(server_pid)
            windows.append(Window(index + 1, round(offset, 1), round(seconds, 1), event, result.requests,
                                  result.errors, result.rps, result.p50_ms, result.p99_ms, worker_rss_mb(workers),
                                  [process.pid for process in workers], *redis_clients(monitor),
                                  background.result if background else None))  # fmt: skip
            print_window(windows[-1])
    finally:
        monitor.close()
    return windows


def publish_b(redis_url: str) -> Callable[[], dict]:
    """The mid-soak publish of run B."""
    return with_own_connection(redis_url, lambda client: publish(client, RUN_B, "B"))


def prune_a(redis_url: str) -> Callable[[], dict]:
    """The later prune that removes run A."""
    return with_own_connection(redis_url, prune_older_runs)


def verdict(windows: list[Window]) -> dict:
    """Each pass criterion with its figures, and PASS only when every one holds."""
    errors = sum(window.errors for window in windows)
    failed_actions = [w.store_action for w in windows if w.store_action and "error" in w.store_action]
    first_p99 = windows[0].p99_ms
    limits = {w.index: PUBLISH_P99_LIMIT if w.event == "publish B" else P99_LIMIT for w in windows}
    slow = [w.index for w in windows if not w.p99_ms <= first_p99 * limits[w.index]]  # a NaN p99 (no answers) fails
    baseline, last = windows[1].worker_rss_mb, windows[-1].worker_rss_mb
    growth = (last - baseline) / baseline
    same_workers = len({tuple(window.worker_pids) for window in windows}) == 1
    clients = [window.redis_clients for window in windows]
    checks = {
        "no_errors": {"pass": errors == 0 and not failed_actions, "errors": errors,
                      "failed_store_actions": failed_actions},
        "stable_p99": {"pass": not slow, "first_window_p99_ms": first_p99, "windows_over": slow,
                       "limit": f"{P99_LIMIT}x the first window's p99, {PUBLISH_P99_LIMIT}x in the publish window"},
        "worker_memory": {"pass": growth < RSS_GROWTH_LIMIT and same_workers, "second_window_mb": baseline,
                          "last_window_mb": last, "growth": round(growth, 4), "same_workers_throughout": same_workers},
        "flat_redis_connections": {"pass": max(clients) - min(clients) <= CLIENTS_SPREAD_LIMIT,
                                   "min": min(clients), "max": max(clients)},
    }  # fmt: skip
    return {"pass": all(check["pass"] for check in checks.values()), "checks": checks}


HEADER = f"{'window':>6} {'start_s':>7} {'event':>9} {'requests':>8} {'errors':>6} {'rps':>7} " \
         f"{'p50_ms':>7} {'p99_ms':>7} {'rss_mb':>7} {'redis_clients':>13}"  # fmt: skip


def print_window(window: Window) -> None:
    """One row of the table, as soon as its window ends."""
    print(f"{window.index:>6} {window.started_s:>7} {window.event:>9} {window.requests:>8} {window.errors:>6} "
          f"{window.rps:>7} {window.p50_ms:>7.2f} {window.p99_ms:>7.2f} {window.worker_rss_mb:>7} "
          f"{window.redis_clients:>13}", flush=True)  # fmt: skip
    if window.store_action:
        print(f"{'':>15} {json.dumps(window.store_action)}", flush=True)


def print_verdict(result: dict) -> None:
    """One line per criterion, then PASS or FAIL."""
    for name, check in result["checks"].items():
        figures = {key: value for key, value in check.items() if key != "pass"}
        print(f"{'ok  ' if check['pass'] else 'FAIL'} {name.replace('_', ' ')}: {json.dumps(figures)}")
    print("PASS" if result["pass"] else "FAIL")


def soak(minutes: float, workdir: Path) -> tuple[list[Window], dict]:
    """Start Redis and the API, publish run A, run the windows; stop everything afterwards."""
    redis_server = RedisProcess(workdir)
    redis_server.start()
    server = ApiServer(redis_server.url, workdir / "api.log")
    try:
        with redis.Redis.from_url(redis_server.url) as client:
            first = publish(client, RUN_A, "A")
        server.start()
        print(f"API {server.url} (log {server.log_path}); Redis {redis_server.url}; {first}", flush=True)
        # Every worker's Redis pool grows to the requests it has served at once; a warm-up that
        # keeps all their threads busy fills the pools, so that later growth can only be a leak.
        threads = len(worker_processes(server.process.pid)) * load_config(environ={}).api.threads
        run_load(server.url, load_paths(), 2 * threads, WARMUP_SECONDS, LOAD_PROCESSES)
        print(HEADER, flush=True)
        windows = run_windows(server.url, server.process.pid, redis_server.url, minutes)
    finally:
        server.stop()
        redis_server.stop()
    return windows, verdict(windows)


def positive_minutes(text: str) -> float:
    """--minutes: a positive number (fractions allowed)."""
    try:
        minutes = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None
    if not 0 < minutes <= 24 * 60:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 1440, got {text!r}")
    return minutes


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 0 on PASS, 1 on FAIL, 2 when it cannot run (bad arguments, a server that does not start)."""
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=positive_minutes, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--out-dir", type=Path, default=Path("var/soak"), help="where the JSON goes (var/soak)")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    name = f"soak-{started:%Y%m%dT%H%M%SZ}"
    # The API's and Redis's logs, kept for a look at a failure; absolute, as both servers change folder.
    workdir = (args.out_dir / name).resolve()
    try:
        workdir.mkdir(parents=True)
        windows, result = soak(args.minutes, workdir)
    except (OSError, RuntimeError) as exc:
        print(f"soak could not run: {exc}", file=sys.stderr)
        return 2
    print_verdict(result)
    out = args.out_dir / f"{name}.json"
    document = {"started_at": started.isoformat(), "minutes": args.minutes, "connections": CONNECTIONS,
                "logs": str(workdir), "paths": load_paths(), "windows": [asdict(window) for window in windows],
                "verdict": result}  # fmt: skip
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
