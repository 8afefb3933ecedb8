"""Shared fixtures: one local SparkSession per test session, a private redis-server, and
configs pointing at temporary folders."""

from __future__ import annotations

import logging
import os
import shutil
import sys

import pytest

from conf import load_config, with_overrides
from tools.processes import RedisProcess

REDIS_INSTALL_HINT = (
    "redis-server is not on PATH; the tests start their own private instance. Install it with "
    "'sudo apt-get install -y redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS)."
)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A real local SparkSession shared by the whole test session."""
    from pyspark.sql import SparkSession

    checkpoints = tmp_path_factory.mktemp("spark-checkpoints")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # py4j logs from __del__ at interpreter exit, after pytest has closed its capture streams.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("recs-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(checkpoints))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server started for this test session, never the machine's shared one."""
    if shutil.which("redis-server") is None:
        pytest.fail(REDIS_INSTALL_HINT, pytrace=False)
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A private, persistent redis-server for one test, which the test may stop, freeze and restart."""
    import signal

    if shutil.which("redis-server") is None:
        pytest.fail(REDIS_INSTALL_HINT, pytrace=False)
    server = RedisProcess(tmp_path / "own-redis", persistent=True)
    server.workdir.mkdir()
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A client on the private server, with the database emptied before the test."""
    import redis

    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app_config(redis_server, tmp_path):
    """create_app overrides for API tests: the private Redis, a fast pointer refresh, a private fallback file."""
    api = {"pointer_refresh_seconds": 0.05, "fallback_file": str(tmp_path / "fallback.json")}
    return {"store": {"url": redis_server.url}, "api": api}


@pytest.fixture
def app(app_config, redis_client):
    """The API app on a freshly emptied private Redis; its store reader is closed afterwards."""
    from serving import create_app
    from serving.api_log import remove_api_log

    app = create_app(app_config)
    yield app
    app.extensions["recs_store"].close()
    remove_api_log()  # its held-back counts would otherwise print after pytest's summary


@pytest.fixture
def client(app):
    """Flask's test client: HTTP requests through the real app."""
    return app.test_client()


@pytest.fixture(scope="session")
def base_config():
    """The repository's config, without any RECS_CONFIG or RECS__ variables of the caller."""
    return load_config(environ={})


@pytest.fixture
def pipeline_config(base_config, tmp_path):
    """A config whose data and run folders live under this test's tmp_path, with a small model."""
    return with_overrides(
        base_config,
        {
            "paths": {"runs_root": str(tmp_path / "runs")},
            "input": {"path": str(tmp_path / "data" / "interactions")},
            "items": {"path": str(tmp_path / "data" / "items")},
            "train": {"rank": 8, "max_iter": 6, "num_user_blocks": 2, "num_item_blocks": 2},
            "tune": {"trials": 2, "space": {"alpha": [1.0]}},
        },
    )
