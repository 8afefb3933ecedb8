"""Slow and idle clients against the API under its production server: 200 connections that
trickle a request's headers in a byte at a time and 200 that connect and say nothing must not
slow down everyone else (issue: under gunicorn gthread each of them held a worker thread)."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
import requests
from store_seeding import seed_run

from bench.load import run_load
from tools.processes import ApiServer

pytestmark = pytest.mark.faults

USERS = 2_000
SLOW, IDLE = 200, 200
# A partial header line every this many seconds per slow connection, as in the reported attack.
TRICKLE_SECONDS = 2.0


class Trickler(threading.Thread):
    """Holds ``count`` connections that each send a partial request line now and then, and
    reconnects any the server closes (as an attacker would), until stopped."""

    def __init__(self, port: int, count: int):
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.reconnects = 0

    def _open(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        conn.sendall(b"GET /v1/recommendations/user_00000001?n=10 HTTP/1.1\r\nHost: x\r\n")
        return conn

    def run(self) -> None:
        self.sockets = [self._open() for _ in range(self.count)]
        while not self.stopping.wait(TRICKLE_SECONDS):
            for index, conn in enumerate(self.sockets):
                try:
                    conn.sendall(b"X-Slow: a\r\n")
                except OSError:
                    conn.close()
                    self.sockets[index] = self._open()
                    self.reconnects += 1

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self.stopping.set()
        self.join(timeout=10)
        for conn in self.sockets:
            conn.close()


def p99_of_runs(url: str, paths: list[str], runs: int = 3) -> tuple[float, int, int]:
    """Median p99 (ms) over ``runs`` bounded load runs of 4 connections, total requests and errors."""
    results = [run_load(url, paths, concurrency=4, seconds=3.0, processes=2) for _ in range(runs)]
    p99 = statistics.median(r.p99_ms for r in results)
    return p99, sum(r.requests for r in results), sum(r.errors for r in results)


def test_slow_and_idle_connections_cost_other_clients_no_more_than_twice_the_p99(redis_server, redis_client, tmp_path):
    lists = {f"user_{u:08d}": [(f"item_{(u + k) % 997:04d}", 1.0 - k / 100) for k in range(50)] for u in range(USERS)}
    seed_run(redis_client, "2026-11-28_20261128T020000000Z", lists, [(f"item_{k:04d}", 100.0 - k) for k in range(50)])
    server = ApiServer(redis_server.url, tmp_path / "api.log")
    server.start()
    paths = [f"/v1/recommendations/user_{u:08d}?n=10" for u in range(0, USERS, 7)]
    try:
        run_load(server.url, paths, 4, 1.0)  # warm-up: every worker loads the run
        baseline_p99, baseline_requests, baseline_errors = p99_of_runs(server.url, paths)
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(IDLE)]
        slow = Trickler(server.port, SLOW)
        slow.start()
        time.sleep(1.0)
        try:
            loaded_p99, loaded_requests, loaded_errors = p99_of_runs(server.url, paths)
            # A normal client still gets an ordinary answer while all of them are open.
            assert requests.get(f"{server.url}/v1/recommendations/user_00000003", timeout=5).status_code == 200
            held = len(slow.sockets)
        finally:
            slow.close()
            for conn in idle:
                conn.close()
    finally:
        server.stop()
    print(
        f"baseline p99 {baseline_p99} ms ({baseline_requests} requests); with {SLOW} slow and {IDLE} idle "
        f"connections p99 {loaded_p99} ms ({loaded_requests} requests, {slow.reconnects} slow reconnects)"
    )
    assert held == SLOW
    assert baseline_errors == 0 and loaded_errors == 0
    assert loaded_requests > 0.5 * baseline_requests
    assert loaded_p99 <= 2 * baseline_p99
