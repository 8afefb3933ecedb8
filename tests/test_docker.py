"""The Docker setup: the compose file says what the README promises, and where a Docker engine
runs, `docker compose config` accepts it. (Images are not built by the tests: a build downloads
from the package registries and takes minutes.)"""

import shutil
import subprocess

import pytest
import yaml

from tools.processes import ROOT


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_redis_with_the_append_only_file_the_api_and_airflow():
    services = compose()["services"]
    assert set(services) == {"redis", "generate", "airflow", "api"}
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert redis_command[redis_command.index("--appendfsync") + 1] == "always"
    for name in ("api", "airflow"):
        environment = services[name]["environment"]
        assert environment["RECS__STORE__URL"] == "redis://redis:6379/0"
        assert environment["RECS_CONFIG"] == "/app/conf/demo.yaml"
        assert "./conf:/app/conf:ro" in services[name]["volumes"]
    assert services["api"]["command"] == ["api"] and services["airflow"]["command"] == ["airflow"]
    assert all(services[name]["init"] for name in ("api", "airflow")) and "healthcheck" in services["api"]


def test_the_image_entry_points_start_the_production_server_and_airflow():
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "exec python -m serving.server" in entrypoint
    assert "exec airflow standalone" in entrypoint
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "openjdk-17-jre-headless" in dockerfile and "pip install --no-cache-dir -r requirements.lock" in dockerfile
    assert "USER recs" in dockerfile
    assert "python -m tools.bundle" in entrypoint  # the jobs' bundle carries the mounted conf/
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert {"conf", "jobs", "store", "serving", "dags", "orchestration", "tools"} <= copied


def docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not docker_engine(), reason="no Docker engine runs here (the docker client alone cannot check)")
def test_docker_compose_accepts_the_file():
    result = subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
