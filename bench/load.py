"""A closed-loop HTTP load generator: several processes, each with several keep-alive threads,
requesting back to back for a fixed time. Reports requests per second and latency percentiles."""

from __future__ import annotations

import http.client
import multiprocessing
import random
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    """One load run: throughput, latency percentiles in milliseconds, and failures."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


def _thread_loop(base: str, paths: list[str], until: float, latencies: list[float], errors: list[int], seed: int):
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    rng = random.Random(seed)
    while time.perf_counter() < until:
        path = paths[rng.randrange(len(paths))]
        started = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors[0] += 1
        except (OSError, http.client.HTTPException):
            errors[0] += 1
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            continue
        latencies.append(time.perf_counter() - started)
    connection.close()


def _process_main(base: str, paths: list[str], threads: int, start_at: float, seconds: float, seed: int, queue):
    time.sleep(max(0.0, start_at - time.time()))
    until = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = [0]
    workers = [
        threading.Thread(target=_thread_loop, args=(base, paths, until, latencies, errors, seed * 100 + t))
        for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((latencies, errors[0]))


def run_load(base: str, paths: list[str], concurrency: int, seconds: float, processes: int = 2) -> LoadResult:
    """Drive ``concurrency`` connections (split over ``processes``) at base+paths for ``seconds``."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 1.0  # let every process start before the clock runs
    per_process = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    children = [
        context.Process(target=_process_main, args=(base, paths, n, start_at, seconds, i + 1, queue))
        for i, n in enumerate(per_process)
    ]
    for child in children:
        child.start()
    results = [queue.get() for _ in children]
    for child in children:
        child.join()
    latencies = sorted(latency for batch, _ in results for latency in batch)
    errors = sum(errors for _, errors in results)
    if not latencies:
        return LoadResult(0, errors, seconds, 0.0, float("nan"), float("nan"))
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        rps=round(len(latencies) / seconds, 1),
        p50_ms=round(quantiles[49] * 1000, 3),
        p99_ms=round(quantiles[98] * 1000, 3),
    )
