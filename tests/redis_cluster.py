"""A private Redis Cluster for tests: three masters on free loopback ports, no replicas, in a
temporary folder of its own, stopped (only the processes it started) and removed afterwards."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tools.processes import free_port

START_TIMEOUT_SECONDS = 30


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports (free_port may hand out a port twice in a row)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class LoopbackRedisCluster:
    """``masters`` redis-server processes in cluster mode on 127.0.0.1, joined by redis-cli."""

    def __init__(self, masters: int = 3):
        self.masters = masters
        self.workdir = Path(tempfile.mkdtemp(prefix="recs-redis-cluster-"))
        # The cluster bus port is chosen too: the default (port + 10000) may be taken or past 65535.
        ports = distinct_free_ports(2 * masters)
        self.ports, self.bus_ports = ports[:masters], ports[masters:]
        self.processes: list[subprocess.Popen] = []
        self._stopped = False
        # A test run killed between start and the fixture's teardown still leaves nothing behind.
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """A URL naming one node; the cluster client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every master."""
        return [f"127.0.0.1:{port}" for port in self.ports]

    def start(self) -> None:
        """Start every node, create the cluster and wait until every node says it is ok."""
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            self.processes.append(self._start_node(port, bus_port))
        for port in self.ports:
            self._wait(lambda port=port: self.node(port).ping(), f"node {port} to answer")
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *self.addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        self._wait(self._every_node_ok, "cluster_state:ok on every node")

    def _start_node(self, port: int, bus_port: int) -> subprocess.Popen:
        return subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-port", str(bus_port), "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf"),
             "--appendonly", "no", "--save", "", "--dir", str(self.workdir),
             "--logfile", str(self.workdir / f"redis-{port}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def node(self, port: int):
        """A plain (non-cluster) client on one node, for looking at that node alone."""
        import redis

        return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=5)

    def _every_node_ok(self) -> bool:
        for port in self.ports:
            info = self.node(port).cluster("info")
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != self.masters:
                return False
        return True

    def _wait(self, ready, what: str) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            dead = [process.pid for process in self.processes if process.poll() is not None]
            if dead:
                raise RuntimeError(f"redis-server {dead} exited; see the logs in {self.workdir}")
            try:
                if ready():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}; see the logs in {self.workdir}")

    def stop(self) -> None:
        """Stop exactly the processes this cluster started and remove its folder (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def keys_per_node(self, pattern: str) -> dict[int, int]:
        """How many keys match ``pattern`` on each master, by SCAN on that node alone."""
        counts = {}
        for port in self.ports:
            client = self.node(port)
            counts[port] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
            client.close()
        return counts
