"""Processes the tests and the benchmarks start: a private redis-server on a free port, the
API under granian (its production server), and clean environments for subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    """A private redis-server on a free port, which tests may stop and start again."""

    def __init__(self, workdir: Path, persistent: bool = False):
        self.workdir = workdir
        self.port = free_port()
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (same port as before) and wait until it answers."""
        import redis

        # A persistent server keeps its data across stop() and start(), through an append-only file.
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}; see {self.workdir / 'redis.log'}")

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def project_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: the venv's bin first on PATH and the repo on PYTHONPATH,
    with no config overrides (RECS__*, RECS_CONFIG, REDIS_URL) leaking in from the caller."""
    leaks = ("RECS_CONFIG", "REDIS_URL")
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECS__") and key not in leaks}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def setting_variables(section: str, settings: dict | None) -> dict[str, str]:
    """RECS__<SECTION>__<KEY> variables for some settings of one config section."""
    return {f"RECS__{section.upper()}__{key.upper()}": str(value) for key, value in (settings or {}).items()}


class ApiServer:
    """The lookup API under its production server (granian, serving/server.py), as a real process on a free port.
    ``api`` and ``store`` are settings of those config sections, e.g. ``api={"workers": 1}``."""

    def __init__(self, redis_url: str, log_path: Path, api: dict | None = None, store: dict | None = None):
        self.port = free_port()
        self.log_path = log_path
        self.env = project_env(
            RECS__STORE__URL=redis_url,
            RECS__API__BIND=f"127.0.0.1:{self.port}",
            RECS__API__FALLBACK_FILE=str(log_path.with_suffix(".fallback.json")),
            RECS__API__METRICS_DIR=str(log_path.with_suffix(".metrics")),
            **setting_variables("api", api),
            **setting_variables("store", store),
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until /healthz answers."""
        import requests

        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving.server"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the API server did not start; see {self.log_path}")

    def stop(self) -> None:
        """Stop the server gracefully."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def spark_home() -> Path:
    """The pyspark package's folder, a whole Spark installation (bin/, jars/, python/lib/)."""
    import importlib.util

    return Path(importlib.util.find_spec("pyspark").submodule_search_locations[0])


class SparkStandaloneCluster:
    """A Spark standalone master and workers on 127.0.0.1 and free ports, started with the launch
    classes of the pyspark installation. ``env`` is the workers' environment, which their
    executors and the executors' Python workers inherit (PATH, PYSPARK_PYTHON, PYTHONPATH)."""

    MASTER = "org.apache.spark.deploy.master.Master"
    WORKER = "org.apache.spark.deploy.worker.Worker"

    def __init__(self, workdir: Path, env: dict[str, str], workers: int = 2, cores: int = 1, memory: str = "1g"):
        self.workdir = workdir
        # The master's REST submission server would take the fixed port 6066; nothing here uses it.
        self.env = {**env, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}  # fmt: skip
        self.port, self.webui_port = free_port(), free_port()
        self.workers, self.cores, self.memory = workers, cores, memory
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def worker_dir(self, number: int) -> Path:
        """The folder where worker ``number`` keeps its applications' files (one folder per app)."""
        return self.workdir / f"worker-{number}"

    def start(self, timeout: float = 120) -> None:
        """Start the master and the workers; wait until every worker is registered and ALIVE."""
        self._launch("master", self.MASTER, "--host", "127.0.0.1", "--port", str(self.port),
                     "--webui-port", str(self.webui_port))  # fmt: skip
        for number in range(self.workers):
            self.worker_dir(number).mkdir(parents=True, exist_ok=True)
            self._launch(f"worker-{number}", self.WORKER, "--host", "127.0.0.1", "--cores", str(self.cores),
                         "--memory", self.memory, "--webui-port", str(free_port()),
                         "--work-dir", str(self.worker_dir(number)), self.url)  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.alive_workers() < self.workers:
            exited = [name for name, process in self.processes.items() if process.poll() is not None]
            if exited or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Spark cluster did not come up (exited: {exited}); logs in {self.workdir}")
            time.sleep(0.5)

    def _launch(self, name: str, main_class: str, *args: str) -> None:
        spark_class = str(spark_home() / "bin" / "spark-class")
        with open(self.workdir / f"{name}.log", "w") as log:
            # A session of its own: stop() signals the whole group, executors the worker started included.
            self.processes[name] = subprocess.Popen(
                [spark_class, main_class, *args], env=self.env, cwd=self.workdir, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def master_state(self) -> dict:
        """The master's state as its web UI gives it in JSON (workers, applications), or {}."""
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=2) as response:
                return json.load(response)
        except (OSError, ValueError):  # ValueError: while starting, the UI may answer with an HTML page
            return {}

    def alive_workers(self) -> int:
        """How many workers the master has registered as ALIVE."""
        return sum(worker.get("state") == "ALIVE" for worker in self.master_state().get("workers", []))

    def stop(self) -> None:
        """Stop every process this cluster started, workers first: SIGTERM to each process group,
        SIGKILL to a group still there after 20 seconds."""
        import signal

        started = list(reversed(self.processes.values()))
        for process in started:
            _signal_group(process, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
            _signal_group(process, signal.SIGKILL)  # children left in the group (executors, Python workers)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
